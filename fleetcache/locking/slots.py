"""Redis Cluster hash tags: keys that a script touches together must share a slot.

A key's slot is CRC16 of its hash tag -- the text between its first ``{`` and the first
``}`` after it, when that text is not empty -- or of the whole key.  A lock name and its
fence counter go in one script, so the counter's key is the name's key plus a suffix when
the name carries a tag (``fc:ns:5:{abc}:lock`` -> ``fc:ns:5:{abc}:lock:fence``), and the
name's whole key as the tag otherwise (``jobs`` -> ``{jobs}:fence``): both then hash to
the slot of ``jobs``.  A name with no tag that contains ``}`` cannot be wrapped so
(``{a}b}`` would be read as tag ``a``): :func:`companion` then appends the suffix, which
is right on one node, and :func:`check_cluster_name` refuses the name on a cluster.
"""

from __future__ import annotations


def hash_tag(key: str) -> str | None:
    """The hash tag of ``key`` as Redis Cluster reads it, or None when it has none."""
    start = key.find("{")
    if start == -1:
        return None
    end = key.find("}", start + 1)
    if end == -1 or end == start + 1:
        return None
    return key[start + 1 : end]


def companion(key: str, suffix: str) -> str:
    """A key in ``key``'s slot, named after it: ``key + suffix``, or ``{key}`` + suffix
    when ``key`` has no hash tag (and no ``}``, see the module docstring)."""
    if hash_tag(key) is not None or "}" in key:
        return key + suffix
    return "{" + key + "}" + suffix


def check_cluster_name(key: str) -> None:
    """ValueError for a lock key whose fence counter cannot share its Cluster slot."""
    if hash_tag(key) is None and "}" in key:
        raise ValueError(
            f"lock key {key!r} has no hash tag but contains '}}': on Redis Cluster its fence "
            "counter cannot share its slot; put a hash tag in the name, e.g. '{jobs}:a}b'"
        )

"""Turn any user-facing error into one readable line."""

from __future__ import annotations


def one_line(err: BaseException) -> str:
    """jsonargparse explains a bad config as a nested tree; keep the path and the innermost reason."""
    text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(lines) == 1:
        return lines[0].strip()
    noise = ("Does not validate", "Subtypes:", "Errors:", "Expected a <class", "Given value")
    useful = [ln for ln in lines if not ln.strip(" -").startswith(noise)]
    depth = [len(ln) - len(ln.lstrip(" -")) for ln in useful]
    deepest = max(range(len(useful)), key=lambda i: (depth[i], i))
    reason = useful[deepest].strip(" -")
    where = [ln.strip(" -").rstrip(":") for ln in useful[:deepest]]
    return f"{reason} ({' > '.join(where)})" if where else reason

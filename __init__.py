"""hallo-nodes: Hallo talking-portrait generation as ComfyUI nodes.

ComfyUI imports this file. It imports nothing heavy, never downloads and never edits sys.path. The node
mappings load with the nodes when ComfyUI first asks for them, so that ``hallo-render`` and ``hallo-eval``
(which live in this package too) answer ``--help`` without importing torch.
"""

WEB_DIRECTORY = "./js"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]

_NODE_MAPPINGS = ("NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS")


def __getattr__(name: str) -> object:
    """``NODE_CLASS_MAPPINGS`` and ``NODE_DISPLAY_NAME_MAPPINGS``, imported from ``nodes`` on first use."""
    if name not in _NODE_MAPPINGS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if not __package__:  # loaded as a lone file: pytest collecting a checkout whose folder name is not an identifier
        return {}
    try:
        from . import nodes
    except AttributeError as exc:  # hasattr() would swallow it and ComfyUI would report missing mappings instead
        raise ImportError(f"hallo-nodes failed to import its nodes: {exc}") from exc
    return getattr(nodes, name)

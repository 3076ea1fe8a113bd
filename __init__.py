"""hallo-nodes: Hallo talking-portrait generation as ComfyUI nodes.

ComfyUI imports this file. It imports nothing heavy, never downloads and never edits sys.path. The node classes
(and torch with them) are imported when ComfyUI first reads ``NODE_CLASS_MAPPINGS``, so ``hallo-render`` and
``hallo-eval``, which live in this package too, start without them.
"""

WEB_DIRECTORY = "./js"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]

if __package__:  # ComfyUI and `import hallo_nodes` load this file as a package

    def __getattr__(name: str):  # PEP 562: the node mappings on first use
        if name in ("NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"):
            from . import nodes

            return getattr(nodes, name)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

else:  # loaded as a lone file: pytest collecting a checkout whose folder name is not a Python identifier
    NODE_CLASS_MAPPINGS: dict = {}
    NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {}

"""hallo-nodes: Hallo talking-portrait generation as ComfyUI nodes.

ComfyUI imports this file. It imports nothing heavy, never downloads and never edits sys.path.
"""

WEB_DIRECTORY = "./js"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]

if __package__:  # ComfyUI and `import hallo_nodes` load this file as a package
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
else:  # loaded as a lone file: pytest collecting a checkout whose folder name is not a Python identifier
    NODE_CLASS_MAPPINGS: dict = {}
    NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {}

"""hallo-nodes: Hallo talking-portrait generation as ComfyUI nodes.

ComfyUI imports this file. It imports nothing heavy, never downloads and never edits sys.path.
"""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

WEB_DIRECTORY = "./js"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]

"""Test-only ComfyUI node: a FLOAT output whose value is a list of floats (as schedule nodes send them)."""


class FloatListSource:
    CATEGORY = "testing"
    RETURN_TYPES = ("FLOAT",)
    RETURN_NAMES = ("floats",)
    FUNCTION = "make"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"values": ("STRING", {"default": "1.0, 1.0"}),
                             "repeat_last": ("INT", {"default": 0, "min": 0, "max": 100000})}}

    def make(self, values: str, repeat_last: int) -> tuple[list[float]]:
        floats = [float(v) for v in values.split(",")]
        return (floats + floats[-1:] * repeat_last,)


NODE_CLASS_MAPPINGS = {"FloatListSource": FloatListSource}

"""metrics.jsonl: one JSON object per optimizer step, written by rank 0."""

import json
from typing import Any, Dict


class JsonlWriter:
    """Appends one JSON object per line and flushes, so a killed job keeps every finished step."""

    def __init__(self, path: str):
        self.f = open(path, "a")

    def write(self, obj: Dict[str, Any]):
        self.f.write(json.dumps(obj) + "\n")
        self.f.flush()

    def close(self):
        self.f.close()

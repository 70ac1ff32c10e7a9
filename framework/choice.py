"""The base of every closed choice in the config (`optim.schedule`, `train.device`, ...): a str Enum, so a typo
fails at compose time naming the full key and the allowed values, and a member compares and prints as its value."""

from enum import Enum


class Choice(str, Enum):
    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

"""The one error type a user mistake raises: it names the key, the value, the rule and the fix."""


class ConfigError(Exception):
    """A user mistake in the config, the data or the environment. Printed as one message, never a traceback."""

    def __init__(self, key: str, value, rule: str, fix: str):
        self.key, self.value, self.rule, self.fix = key, value, rule, fix
        super().__init__(f"{key}={value!r}: {rule}. Fix: {fix}")

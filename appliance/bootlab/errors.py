"""The one error type bootlab raises on purpose: what went wrong, and how to fix it."""


class BootlabError(Exception):
    """A failure the user can act on; rendered once, without a traceback, by the CLIs."""

    def __init__(self, message: str, hint: str | None = None, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code

    def render(self) -> str:
        text = f"error: {self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


def die(message: str, hint: str | None = None, exit_code: int = 1) -> BootlabError:
    """Build the error to raise: `raise die("...", hint="...")` reads as one sentence."""
    return BootlabError(message, hint, exit_code)

"""Registering the bundled base model off the UI thread, for the screens that list models (Models, Eval).

The first registration copies the bundled ~100 MB GGUF into the workspace and hashes it: a second or more on a
slow disk, which the frame must not wait for. One lock, because two screens may ask at once (F5 then F7) and the
copy goes through one temporary file.
"""

from __future__ import annotations

import threading

from textual import work

from tui.messages import BaseRegistered

_REGISTERING = threading.Lock()
REGISTERING_TEXT = "registering the bundled base model (first start: copying and hashing it)…"


class RegistersBundledBase:
    """Mixed into a screen: `ensure_bundled_base()` says whether `base` is registered and, when it is not, starts the
    worker that registers it (`registering_base` is then True); `bundled_base_registered(error)` is called when it
    ends, for the screen to list its models again."""

    _base_tried = False
    registering_base = False

    def ensure_bundled_base(self) -> bool:
        if self.app.store.get_model("base", missing_ok=True):
            return True
        if not self._base_tried:  # tried once per screen: a missing package is said once, not on every visit
            self._base_tried = self.registering_base = True
            self.register_bundled_base()
        return False

    def on_base_registered(self, message: BaseRegistered) -> None:
        self.registering_base = False
        self.bundled_base_registered(message.error)

    def bundled_base_registered(self, error: str | None) -> None:
        """`base` is now registered (error None), or could not be."""

    @work(thread=True, exclusive=True, exit_on_error=False, group="register-base")
    def register_bundled_base(self) -> None:
        from forge.models import export as ex

        try:
            with _REGISTERING:
                ex.register_bundled_base(self.app.store, self.app.config)
        except Exception as e:  # noqa: BLE001 - the bundled model missing must not hide the rest
            self.post_message(BaseRegistered(str(e)))
            return
        self.post_message(BaseRegistered())

"""Companion mode's chat against a scripted companion on loopback (real HTTP, the real OpenAI client): the history
has one owner, the UI thread, so replies that finish out of order, or after the chat was cleared, leave it right."""

from tests.tui.chat_server import chat_server
from tests.tui.helpers import wait_until
from tui.app import make_app
from tui.screens.companion import CompanionScreen


def history(screen) -> list[tuple[str, str]]:
    return [(m["role"], m["content"].strip()) for m in screen.history]


async def open_chat(pilot, app):
    await pilot.press("f6")
    screen = app.screen
    assert isinstance(screen, CompanionScreen)
    assert await wait_until(pilot, lambda: screen.last_health is not None, 10)
    return screen


async def test_replies_finishing_out_of_order_go_after_their_own_turn(store, config):
    with chat_server() as (port, script):
        config.companion.port = port
        app = make_app(config, store)
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await open_chat(pilot, app)
            script.hold = True
            await pilot.press(*"first", "enter")
            assert await wait_until(pilot, lambda: len(script.requests) == 1, 10)
            await pilot.press(*"second", "enter")
            assert await wait_until(pilot, lambda: len(script.requests) == 2, 10)
            script.release("second")  # the later question is answered first
            assert await wait_until(pilot, lambda: len(screen.history) == 3, 10)
            script.release("first")
            assert await wait_until(pilot, lambda: len(screen.history) == 4, 10)
            await app.workers.wait_for_complete()
            assert history(screen) == [("user", "first"), ("assistant", "reply to first"),
                                       ("user", "second"), ("assistant", "reply to second")]
            replies = [str(w.render()) for w in screen.query(".chat-model")]
            assert replies[0].startswith("scripted  reply to first") and "tokens in" in replies[0]
            assert replies[1].startswith("scripted  reply to second")

            script.hold = False  # the next question carries the whole conversation, in order
            await pilot.press(*"third", "enter")
            assert await wait_until(pilot, lambda: len(screen.history) == 6, 10)
            assert [m["content"].strip() for m in script.requests[-1]] == [
                "first", "reply to first", "second", "reply to second", "third"]


async def test_a_reply_arriving_after_clear_is_dropped(store, config):
    with chat_server() as (port, script):
        config.companion.port = port
        app = make_app(config, store)
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await open_chat(pilot, app)
            script.hold = True
            await pilot.press(*"hello", "enter")
            assert await wait_until(pilot, lambda: len(script.requests) == 1, 10)
            await pilot.press("ctrl+l")
            assert screen.history == []
            script.release("hello")
            await app.workers.wait_for_complete()
            await pilot.pause(0.2)
            assert screen.history == [] and not screen.query(".chat-model")
            script.hold = False  # the next conversation starts clean
            await pilot.press(*"again", "enter")
            assert await wait_until(pilot, lambda: len(screen.history) == 2, 10)
            assert script.requests[-1] == [{"role": "user", "content": "again"}]


async def test_swap_and_stop_keys_work_while_typing_in_the_chat(store, config):
    """ctrl+w and ctrl+s reach the screen although the focused chat Input binds ctrl+w ("delete word")."""
    with chat_server() as (port, script):
        config.companion.port = port
        app = make_app(config, store)
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await open_chat(pilot, app)
            chat = screen.query_one("#chat-input")
            chat.focus()
            await pilot.pause()
            assert chat.has_focus
            await pilot.press(*"half a word")
            await pilot.press("ctrl+w")  # the swap is asked for (and refused: no admin token, a scripted server)
            assert await wait_until(pilot, lambda: any("admin token" in n.message or "refused" in n.message
                                                       for n in app._notifications), 10)
            assert chat.value == "half a word"  # not taken as "delete word"
            await pilot.press("ctrl+s")  # someone else's server: said, not stopped
            assert await wait_until(pilot, lambda: any("started outside forge" in n.message
                                                       for n in app._notifications), 5)
            assert screen.active_bindings["ctrl+w"].binding.action == "swap"
            await app.workers.wait_for_complete()

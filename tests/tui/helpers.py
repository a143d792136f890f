async def wait_until(pilot, cond, seconds: float = 20.0, step: float = 0.1) -> bool:
    """Let the app run until cond() holds or `seconds` pass; returns cond()."""
    for _ in range(int(seconds / step)):
        if cond():
            return True
        await pilot.pause(step)
    return cond()

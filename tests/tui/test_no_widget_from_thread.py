"""No widget is touched from a worker thread: every `@work(thread=True)` function in tui/ reports by message (or
`call_from_thread`), never by querying widgets, setting attributes, or mutating the screen's own state."""

import ast

from tests.conftest import REPO

# Reaching a widget from a thread: DOM queries and the calls that change what is on screen.
WIDGET_CALLS = {"query_one", "query", "query_children", "get_widget_by_id", "get_child_by_id", "mount",
                "remove_children", "focus", "refresh", "set_options", "clear", "add_row", "write"}
# Mutating shared state (the screen's lists, a widget's content) from a thread races with the UI thread.
MUTATORS = {"append", "pop", "extend", "insert", "remove", "update", "add", "discard", "set_points"}


def is_thread_worker(fn: ast.FunctionDef) -> bool:
    for d in fn.decorator_list:
        if isinstance(d, ast.Call) and (getattr(d.func, "id", None) == "work" or getattr(d.func, "attr", None) == "work"):
            if any(k.arg == "thread" and isinstance(k.value, ast.Constant) and k.value.value for k in d.keywords):
                return True
    return False


def rooted_at_self(node: ast.AST) -> bool:
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return isinstance(node, ast.Name) and node.id == "self"


def offences(fn: ast.FunctionDef) -> list[str]:
    found = []
    for node in ast.walk(fn):
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Attribute) and f.attr in WIDGET_CALLS:
                found.append((node, f"calls .{f.attr}()"))
            elif isinstance(f, ast.Attribute) and f.attr in MUTATORS and rooted_at_self(f.value) \
                    and not (isinstance(f.value, ast.Attribute) and f.value.attr == "app"):
                found.append((node, f"mutates {ast.unparse(f.value)} with .{f.attr}()"))
            elif isinstance(f, ast.Name) and f.id == "setattr":
                found.append((node, "calls setattr()"))
            for arg in node.args:  # call_from_thread(setattr, …) and friends
                if isinstance(arg, ast.Name) and arg.id == "setattr":
                    found.append((node, "passes setattr"))
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                for sub in ast.walk(t):
                    if isinstance(sub, ast.Attribute) and isinstance(sub.ctx, ast.Store):
                        found.append((node, f"assigns {ast.unparse(sub)}"))
    return [f"line {n.lineno}: {what}" for n, what in found]


def thread_workers():
    for path in sorted((REPO / "tui").rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and is_thread_worker(node):
                yield path, node


def test_thread_workers_touch_no_widget():
    workers = list(thread_workers())
    assert len(workers) >= 10  # the scan sees them: train, models, eval, companion, dedup and the dialogs
    bad = {f"{p.relative_to(REPO)}:{fn.name}": offences(fn) for p, fn in workers if offences(fn)}
    assert not bad, bad


def test_the_check_catches_what_it_should():
    src = '''
@work(thread=True)
def w(self):
    self.query_one("#x").update("y")
    self.app.call_from_thread(setattr, button, "disabled", False)
    self.history.append(1)
    self.result = 3
'''
    fn = ast.parse(src).body[0]
    assert is_thread_worker(fn)
    text = " ".join(offences(fn))
    assert ".query_one()" in text and "setattr" in text and "self.history" in text and "self.result" in text
    ok = ast.parse('''
@work(thread=True)
def w(self):
    r = self.app.store.runs()
    self.post_message(Done(r))
    self.app.call_from_thread(self.show, r)
''').body[0]
    assert offences(ok) == []

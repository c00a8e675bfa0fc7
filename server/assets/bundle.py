"""The widget's Python as the browser gets it: which modules, stripped of comments, in one bundle.

The browser runs ``widget/shell/main.py`` (``ENTRY``), which imports the ``widget`` package and the
shared ``protocol`` package. The modules shipped are the ones it imports, directly or not (read from
the sources' import statements), never listed, so a new module ships without touching this file and a
server-only module of ``protocol`` does not ship at all.

Two deliveries (``Config.python_delivery``):

- ``bundle`` (default): one generated file, ``/widget/main.bundle.py``. A few lines write every module
  where PyScript's ``files`` config would put them (``./widget/core/lifecycle.py``, ...), then
  main.py runs. One request instead of one per module.
- ``files``: main.py is the script's src and PyScript's ``files`` config fetches each module from
  its versioned URL (for comparison).

Sources are sent with comments and docstrings removed and every line kept in place (``strip_python``),
so tracebacks keep their line numbers.
"""

import ast
import io
import tokenize

from .fileinfo import content_version

PACKAGES = ("widget", "protocol")  # the browser's top-level packages, folders below the project root
ENTRY = "widget/shell/main.py"      # what PyScript runs; not a module of the file system
BUNDLE_NAME = "main.bundle.py"      # served at /widget/main.bundle.py


def python_modules(root, imported_names=None):
    """Relative paths ("widget/core/lifecycle.py") of the modules ``ENTRY`` imports, directly or not,
    with the ``__init__.py`` of each package on the way: what the browser needs and nothing else (the
    server-only ``protocol/checks.py`` stays on the server). ``imported_names(root, relative)`` may be
    given to remember each file's imports (parsing them all takes about 15 ms)."""
    imported_names = imported_names or _imported_names
    found, pending = set(), [ENTRY]
    while pending:
        relative = pending.pop()
        for name in imported_names(root, relative):
            for path in _module_paths(root, name):
                if path not in found and path != ENTRY:
                    found.add(path)
                    pending.append(path)
    return sorted(found)


def _imported_names(root, relative):
    """Dotted names a module imports, including ``package.name`` for ``from package import name``."""
    tree = ast.parse((root / relative).read_text(encoding="utf-8"))
    package = relative[:-3].replace("/", ".").rsplit(".", 1)[0]
    if relative.endswith("__init__.py"):
        package = relative[:-12].replace("/", ".")
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            names.append(base)
            names += [f"{base}.{alias.name}" for alias in node.names]
    return names


def _module_paths(root, dotted):
    """The files of a dotted name inside PACKAGES: each package's ``__init__.py`` and the module."""
    parts = dotted.split(".")
    if parts[0] not in PACKAGES:
        return []
    paths = []
    for depth in range(1, len(parts) + 1):
        folder = "/".join(parts[:depth])
        if (root / folder / "__init__.py").is_file():
            paths.append(folder + "/__init__.py")
        elif (root / (folder + ".py")).is_file():
            paths.append(folder + ".py")
            break
        else:
            break
    return paths


def _without_bare_strings(tree):
    """The AST dump with every statement that is only a string (docstrings) emptied."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            node.value.value = ""
    return ast.dump(tree)


def strip_python(source):
    """The source without comments and docstrings and indented by one space per block, every line kept
    in place (so tracebacks keep their line numbers): about a third fewer bytes for the widget. Returns
    the source unchanged if it cannot prove (by comparing syntax trees) that nothing else changed."""
    try:
        tokens = [t for t in tokenize.generate_tokens(io.StringIO(source).readline) if t.type != tokenize.NL]
    except (tokenize.TokenError, SyntaxError):
        return source
    cuts, previous = [], tokenize.NEWLINE
    for index, token in enumerate(tokens):
        if token.type == tokenize.COMMENT:
            cuts.append((token.start, token.end, ""))
            continue
        following = tokens[index + 1].type if index + 1 < len(tokens) else tokenize.ENDMARKER
        if (token.type == tokenize.STRING and previous in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT)
                and following in (tokenize.NEWLINE, tokenize.COMMENT, tokenize.ENDMARKER)):
            cuts.append((token.start, token.end, '""'))  # a statement of its own: keeps a body non-empty
        previous = token.type
    lines = source.splitlines(keepends=True)
    for (start_row, start_col), (end_row, end_col), replacement in reversed(cuts):
        merged = (lines[start_row - 1][:start_col] + replacement).rstrip() + lines[end_row - 1][end_col:]
        if not merged.strip():
            merged = "\n"
        lines[start_row - 1:end_row] = [merged] + ["\n"] * (end_row - start_row)
    result = _one_space_indents("".join(lines))
    try:
        if _without_bare_strings(ast.parse(source)) != _without_bare_strings(ast.parse(result)):
            return source
    except SyntaxError:
        return source
    return result


def _one_space_indents(source):
    """``source`` with each statement's indentation made one space per block (Python asks only for
    consistency): 2.6 % less brotli for the widget's bundle. Lines inside brackets or strings are left
    as they are; a source that does not tokenize is returned unchanged."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError):
        return source
    lines = source.splitlines(keepends=True)
    depth, starts_statement = 0, True
    for token in tokens:
        if token.type == tokenize.INDENT:
            depth += 1
        elif token.type == tokenize.DEDENT:
            depth -= 1
        elif token.type == tokenize.NEWLINE:
            starts_statement = True
        elif token.type not in (tokenize.NL, tokenize.COMMENT, tokenize.ENDMARKER):
            if starts_statement:
                row, column = token.start
                lines[row - 1] = " " * depth + lines[row - 1][column:]
            starts_statement = False
    return "".join(lines)


# Runs in MicroPython too: os.mkdir but no os.makedirs, and no importlib.
_INSTALL = """\
def _chat_widget_install(sources):
    import os
    for name, text in sources:
        folder = ''
        for part in name.split('/')[:-1]:
            folder = folder + '/' + part if folder else part
            try:
                os.mkdir(folder)
            except OSError:
                pass
        with open(name, 'w') as out:
            out.write(text)
    try:
        import importlib
        importlib.invalidate_caches()
    except (ImportError, AttributeError):
        pass
"""


def make_bundle(modules, main):
    """The bundle's text: a prelude that writes ``modules`` ([(relative path, source)]), then ``main``.

    The modules land where the ``files`` config would put them, so imports and tracebacks inside them
    are unchanged; main.py's line n is the bundle's line n + the prelude's length (its last line says so).
    """
    lines = [f"# The chat widget's Python in one request, generated by server/assets/bundle.py from {ENTRY} "
             f"and the {' and '.join(PACKAGES)} packages."]
    lines += _INSTALL.splitlines()
    lines.append("_chat_widget_install((")
    lines += [f"    ({name!r}, {text!r})," for name, text in modules]  # repr: one line per module
    lines += ["))", "del _chat_widget_install"]
    lines.append(f"# {ENTRY} follows: its line 1 is line {len(lines) + 2} of this file.")
    return "\n".join(lines) + "\n" + main


class WidgetPython:
    """The configured delivery of the widget's Python: stripped sources, the bundle, their URLs."""

    def __init__(self, config, files):
        self.config = config
        self.files = files  # FileMemo: each source is stripped again only when it changes
        self._made = None       # ((modules, main), bundle bytes) of the last bundle made

    def modules(self):
        return python_modules(self.config.root, self._imported_names)

    def _imported_names(self, root, relative):
        return self.files.get("imports", root / relative, lambda path: _imported_names(root, relative)) or []

    def stripped(self, relative):
        """``strip_python`` of the file at this path relative to the project root."""
        return self.files.get("stripped", self.config.root / relative,
                              lambda path: strip_python(path.read_text(encoding="utf-8")))

    def bundle(self):
        """The bundle's bytes (``make_bundle`` of the stripped sources), made again only when a module
        changed: every frame names it by its hash."""
        modules = tuple((name, self.stripped(name)) for name in self.modules())
        main = self.stripped(ENTRY)
        if self._made is None or self._made[0] != (modules, main):  # the memo's own strings: compared by identity first
            self._made = ((modules, main), make_bundle(modules, main).encode("utf-8"))
        return self._made[1]

    def urls(self):
        """What PyScript fetches for the widget's Python, the main script first: the bundle, or main.py
        and each module."""
        if self.config.python_delivery == "bundle":
            return [f"/widget/{BUNDLE_NAME}?v={content_version(self.bundle())}"]
        return [self._url(ENTRY)] + [self._url(name) for name in self.modules()]

    def pyscript_files(self):
        """PyScript's ``files`` config, {versioned URL: "./<relative path>"}; empty for the bundle."""
        if self.config.python_delivery == "bundle":
            return {}
        return {self._url(name): f"./{name}" for name in self.modules()}

    def _url(self, relative):
        return self.files.versioned_url(self.config.root, relative)

"""Everything the widget says to the visitor comes from one catalogue: ``widget/lang/<lang>.json``.

The server puts the visitor's catalogue (English, German, or a site's own, merged over the shipped one
of its language or English, so no key is ever missing) into the page's settings; ``Words`` reads it. Keys of ``status`` come from the
lifecycle's states, keys of ``alerts`` from ``protocol/close.py``'s failure classes.
"""


class Words:
    def __init__(self, catalogue):
        self.catalogue = catalogue or {}

    def text(self, key):
        """A plain string by name: ``typing``, ``session_expired``, ..."""
        return self.catalogue[key]

    def status(self, state):
        return self.catalogue["status"][state]

    def alert(self, key):
        """``(title, tips)`` of a failure class."""
        title, tips = self.catalogue["alerts"][key]
        return title, list(tips)

    def contact(self, kind):
        return self.catalogue["contact"][kind]

    def reconnect_text(self, attempt, seconds_left):
        if seconds_left is None:
            return fill(self.catalogue["reconnect_now"], attempt=attempt)
        return fill(self.catalogue["reconnect_in"], attempt=attempt, seconds=seconds_left)


def fill(template, **values):
    """``{name}`` placeholders filled with ``values`` (a site's catalogue may leave some out)."""
    for name, value in values.items():
        template = template.replace("{" + name + "}", str(value))
    return template

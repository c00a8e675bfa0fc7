"""The DOM side of the widget: renders state, progress, alerts and messages (see the README's DOM contract).

All text goes in through ``textContent``, never as HTML.
"""

from widget import words


class View:
    def __init__(self, document, root):
        self.document = document
        self.root = root
        self.status = root.querySelector('[role="status"]')
        self.reconnect = root.querySelector("[data-reconnect]")
        self.reconnect_text = root.querySelector("[data-reconnect-text]")
        self.reconnect_progress = root.querySelector("[data-reconnect-progress]")
        self.alert = root.querySelector("[data-alert]")
        self.list = root.querySelector("[data-messages]")
        self.form = root.querySelector("[data-chat-form]")
        self.input = self.form.querySelector('[name="message"]')
        self._state = None
        self._alert = None
        self._items = {}

    def show_state(self, state):
        if state == self._state:
            return
        self._state = state
        self.root.setAttribute("data-state", state)
        self.status.textContent = words.STATUS[state]

    def show_reconnect(self, attempt, seconds_left, fraction_waited):
        self.reconnect.hidden = False
        self.reconnect_text.textContent = words.reconnect_text(attempt, seconds_left)
        self.reconnect_progress.value = fraction_waited

    def hide_reconnect(self):
        self.reconnect.hidden = True

    def show_alert(self, key, contact):
        if key == self._alert:
            return
        self._alert = key
        if key is None:
            self.alert.hidden = True
            return
        title, tips = words.ALERTS[key]
        self.alert.querySelector("[data-alert-title]").textContent = title
        self._fill_list(self.alert.querySelector("[data-alert-tips]"), tips)
        lines = []
        for kind in ("email", "phone", "url"):
            if contact.get(kind):
                lines.append(words.CONTACT[kind] + contact[kind])
        self._fill_list(self.alert.querySelector("[data-alert-contact]"), lines)
        self.alert.hidden = False

    def _fill_list(self, element, lines):
        element.textContent = ""
        for line in lines:
            item = self.document.createElement("li")
            item.textContent = line
            element.appendChild(item)

    def show_message(self, message):
        item = self.document.createElement("li")
        item.setAttribute("data-author", message.author)
        item.setAttribute("data-id", message.id)
        if message.delivery:
            item.setAttribute("data-delivery", message.delivery)
        item.textContent = message.text
        self.list.appendChild(item)
        self._items[message.id] = item
        self.list.scrollTop = self.list.scrollHeight

    def show_delivery(self, message):
        item = self._items.get(message.id)
        if item is not None:
            item.setAttribute("data-delivery", message.delivery)

    def show_notice(self, text):
        item = self.document.createElement("li")
        item.setAttribute("data-author", "system")
        item.textContent = text
        self.list.appendChild(item)

    def take_input(self):
        text = self.input.value
        self.input.value = ""
        return text

"""The DOM side of the widget: renders state, progress, alerts and messages (see the README's DOM contract).

All text goes in through ``textContent``, never as HTML; every word comes from ``words`` (a ``Words``).
"""


class View:
    def __init__(self, document, root, words):
        self.document = document
        self.root = root
        self.words = words
        self.status = root.querySelector('[role="status"]')
        self.reconnect = root.querySelector("[data-reconnect]")
        self.reconnect_text = root.querySelector("[data-reconnect-text]")
        self.reconnect_progress = root.querySelector("[data-reconnect-progress]")
        self.alert = root.querySelector("[data-alert]")
        self.list = root.querySelector("[data-messages]")
        self.typing = root.querySelector("[data-typing]")
        self.form = root.querySelector("[data-chat-form]")
        self.input = self.form.querySelector('[name="message"]')
        self.retry_button = root.querySelector('[data-action="retry"]')
        self.announcer = root.querySelector("[data-announce]")
        self.copy_button = self._copy_controls()
        self._state = None
        self._alert = None
        self._items = {}

    def show_status(self, state, alert, contact, detail):
        self.show_state(state)
        self.show_alert(alert, contact, detail)

    def show_state(self, state):
        if state == self._state:
            return
        self._state = state
        self.root.setAttribute("data-state", state)
        self.status.textContent = self.words.status(state)

    def show_reconnect(self, attempt, seconds_left, fraction_waited, can_retry):
        self.reconnect.hidden = False
        self.reconnect_text.textContent = self.words.reconnect_text(attempt, seconds_left)
        self.reconnect_progress.hidden = False
        self.reconnect_progress.value = fraction_waited
        self.retry_button.hidden = not can_retry

    def offer_retry(self):
        self.reconnect.hidden = False
        self.reconnect_text.textContent = self.words.text("stopped")
        self.reconnect_progress.hidden = True
        self.retry_button.hidden = False

    def hide_reconnect(self):
        self.reconnect.hidden = True

    def show_alert(self, key, contact, detail=None):
        if key == self._alert:
            return
        self._alert = key
        if key is None:
            self.alert.hidden = True
            return
        title, tips = self.words.alert(key)
        self.alert.querySelector("[data-alert-title]").textContent = title
        self._fill_list(self.alert.querySelector("[data-alert-tips]"), ([detail] if detail else []) + tips)
        lines = []
        for kind in ("email", "phone", "url"):
            if contact.get(kind):
                lines.append(self.words.contact(kind) + contact[kind])
        self._fill_list(self.alert.querySelector("[data-alert-contact]"), lines)
        self.alert.hidden = False

    def _copy_controls(self):
        """The "Copy diagnostics" button and a fallback box, added to the alert (Python-only feature)."""
        button = self.document.createElement("button")
        button.type = "button"
        button.setAttribute("data-action", "copy-diagnostics")
        button.textContent = self.words.text("copy_diagnostics")
        self.copy_note = self.document.createElement("span")
        self.copy_note.setAttribute("data-copy-note", "")
        self.copy_box = self.document.createElement("textarea")
        self.copy_box.setAttribute("data-diagnostics", "")
        self.copy_box.setAttribute("readonly", "")
        self.copy_box.setAttribute("aria-label", self.words.text("diagnostics"))
        self.copy_box.hidden = True
        for element in (button, self.copy_note, self.copy_box):
            self.alert.appendChild(element)
        return button

    def show_copy_result(self, copied, text):
        self.copy_note.textContent = self.words.text("copied") if copied else self.words.text("copy_failed")
        if not copied:
            self.copy_box.value = text
            self.copy_box.hidden = False
            self.copy_box.select()

    def _fill_list(self, element, lines):
        element.textContent = ""
        for line in lines:
            item = self.document.createElement("li")
            item.textContent = line
            element.appendChild(item)

    def apply(self, updates):
        """Render what the conversation changed (``chat.Show`` / ``chat.Update``)."""
        for update in updates:
            item = self._items.get(update.message.id)
            if item is None:
                item = self.document.createElement("li")
                self._items[update.message.id] = item
            self._fill(item, update.message)
            if type(update).__name__ == "Show":
                before = self._items.get(update.before) if update.before is not None else None
                if before is not None:
                    self.list.insertBefore(item, before)
                else:
                    self.list.appendChild(item)
        self.list.scrollTop = self.list.scrollHeight

    def _fill(self, item, message):
        item.setAttribute("data-author", message.author)
        item.setAttribute("data-id", message.id)
        if message.delivery:
            item.setAttribute("data-delivery", message.delivery)
        if message.streaming:
            item.setAttribute("data-streaming", "true")
        else:
            item.removeAttribute("data-streaming")
        item.textContent = message.text

    def remove(self, messages):
        for message in messages:
            item = self._items.pop(message.id, None)
            if item is not None:
                item.remove()

    def show_typing(self, typing):
        self.typing.hidden = not typing

    def show_notice(self, key):
        item = self.document.createElement("li")
        item.setAttribute("data-author", "system")
        item.textContent = self.words.text(key)
        self.list.appendChild(item)

    def show_unread(self, count, fresh):
        # boot.js passes these on to the host page's launcher: its badge, and an announcement per fresh one.
        self.root.setAttribute("data-unread", str(count))
        self.root.setAttribute("data-unread-fresh", str(fresh))

    def announce(self, text):
        """Say a completed reply once: the message list itself is not a live region, so streamed
        words are not read out piece by piece."""
        self.announcer.textContent = ""
        self.announcer.textContent = text

    def take_input(self):
        text = self.input.value
        self.input.value = ""
        return text

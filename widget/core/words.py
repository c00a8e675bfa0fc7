"""Everything the widget says to the visitor, in one place (keys come from the lifecycle)."""

STATUS = {
    "loading": "Loading chat…",
    "connecting": "Connecting…",
    "connected": "Connected",
    "reconnecting": "Reconnecting…",
    "offline": "You are offline. Chat will reconnect when your connection is back.",
    "failed": "Chat is unavailable",
}

ALERTS = {
    "unreachable": ("We can't reach the chat right now. We'll keep trying.",
                    ["Check your internet connection.", "If you use a VPN or proxy, try turning it off.",
                     "Reload the page."]),
    "interference": ("Your network or a proxy is interrupting live chat.",
                ["If you are on a company or public network, its proxy or firewall may block live chat: "
                 "try another network, such as your phone's.",
                 "If you use a VPN or proxy, try turning it off.", "Reload the page."]),
    "headers": ("Your browser sends more cookie data than the chat server accepts.",
                ["Clear this site's cookies, or open the page in a private window, then reload.",
                 "Or use the contacts below."]),
    "draining": ("The chat service is restarting. It should be back in a moment.",
                 ["Wait a few seconds; we'll reconnect by ourselves."]),
    "origin": ("This site is not allowed to use this chat server.",
               ["This is a setup problem on the website's side, not yours: please use the contacts below."]),
    "policy": ("The chat server refused this connection.",
               ["Reload the page. If it happens again, please use the contacts below."]),
    "too_big": ("That message was too long for the chat.",
                ["Reload the page and send a shorter message."]),
    "protocol": ("This page's chat is out of date with the chat server.",
                 ["Reload the page to get the current version."]),
    "config": ("The chat is not set up correctly on this page (a configuration error).",
               ["This is a setup problem on the website's side: please use the contacts below."]),
}

CONTACT = {"email": "Email: ", "phone": "Phone: ", "url": "Contact page: "}

COPY_DIAGNOSTICS = "Copy diagnostics"
COPIED = "Copied. Paste it into your message to our support."
COPY_FAILED = "Select the text below and copy it."

STOPPED = "Chat has stopped."

SESSION_EXPIRED = "Your earlier conversation has expired, so this is a new one."

OUTBOX_FULL = "Too many messages are waiting to be sent. Please wait until chat reconnects."


def reconnect_text(attempt, seconds_left):
    if seconds_left is None:
        return "Reconnecting now… (attempt %d)" % attempt
    return "Reconnecting in %d s… (attempt %d)" % (seconds_left, attempt)

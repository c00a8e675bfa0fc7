"""A TCP server that accepts connections and never answers: the 'stuck upgrade' fault."""

import socket
import threading


class BlackHole:
    def __init__(self):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.accepted = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self):
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.accepted.append(connection)  # held open, never read or answered

    def close(self):
        self.listener.close()
        for connection in self.accepted:
            connection.close()

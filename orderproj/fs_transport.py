"""Kombu's filesystem transport (the embedded mode's broker) with atomic writes.

Upstream `_put` creates the message file and then writes it, and a consumer listing the
folder can move and read the file in between: an empty message, a JSONDecodeError, and the
worker stops. Creating an exchange table has the same gap. Here every file appears whole:
it is written under a hidden temporary name (which `_get` never matches) and then renamed
or linked into place, both atomic on one filesystem.
"""

import os
import uuid
from time import monotonic

from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        temporary = os.path.join(self.data_folder_out, f".{name}.tmp")
        try:
            with open(temporary, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(temporary, final)
        except OSError as exc:
            raise filesystem.ChannelError(f"Cannot add file {final!r} to directory") from exc

    def _queue_bind(self, exchange, routing_key, pattern, queue):
        table = self._exchange_file(exchange)
        if not table.exists():
            self.control_folder.mkdir(exist_ok=True)
            entry = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
            temporary = table.with_name(f".{table.name}.{uuid.uuid4().hex}.tmp")
            temporary.write_bytes(str_to_bytes(dumps([entry])))
            try:
                os.link(temporary, table)  # fails if another process created it meanwhile
                return
            except FileExistsError:
                pass  # add our entry to theirs, under the lock, as upstream does
            finally:
                temporary.unlink()
        super()._queue_bind(exchange, routing_key, pattern, queue)


class Transport(filesystem.Transport):
    Channel = Channel

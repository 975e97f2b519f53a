// Closing a connection whose request body was refused before it was read (413). Closing
// a socket with unread data makes the kernel answer with a reset, and a client still
// writing its body then sees EPIPE or ECONNRESET instead of the 413 it was sent (seen
// here: one run in five of a 1 MiB upload on loopback). So, like nginx's lingering_close,
// the service half-closes after the answer and reads and drops what is still coming, for
// a short while and a bounded number of bytes, then closes.
import type { IncomingMessage, ServerResponse } from "node:http";

const LINGER_MS = 2000;
const LINGER_BYTES = 4 * 1024 * 1024;

/** Call before answering: the answer says `Connection: close`, and the connection closes
 *  once the client has read it and stopped sending (or after LINGER_MS / LINGER_BYTES). */
export function closeAfterAnswer(req: IncomingMessage, res: ServerResponse): void {
  res.setHeader("connection", "close");
  const socket = req.socket;
  // The body keeps flowing to its reader and is dropped there; node:http would destroy
  // the socket as soon as the answer's FIN is out (destroySoon): instead, wait.
  req.resume();
  res.once("finish", () => {
    socket.removeListener("finish", socket.destroy);
    const start = socket.bytesRead;
    const check = setInterval(() => {
      if (socket.bytesRead - start > LINGER_BYTES) socket.destroy();
    }, 50);
    const timer = setTimeout(() => socket.destroy(), LINGER_MS);
    check.unref();
    timer.unref();
    socket.once("close", () => {
      clearInterval(check);
      clearTimeout(timer);
    });
    // The client read the answer and closed its side: nothing more is coming.
    socket.once("end", () => socket.destroy());
  });
}

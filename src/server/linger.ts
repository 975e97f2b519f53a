// Closing a connection whose request body was refused before it was read (413). Closing
// a socket with unread data makes the kernel answer with a reset, and a client still
// writing its body then sees EPIPE or ECONNRESET instead of the 413 it was sent (seen
// here: 19 of 40 uploads of 3 MiB on loopback). So, like nginx's lingering_close, the
// service half-closes after the answer and reads and drops what is still coming, for a
// short while and a bounded number of bytes, then closes.
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Socket } from "node:net";

const LINGER_MS = 2000;
const LINGER_BYTES = 4 * 1024 * 1024;

const lingering = new WeakSet<Socket>();

/** True for a connection that is only being drained: a request pipelined behind the
 *  refused body must not run (its answer could not be sent); the caller destroys it. */
export function isLingering(socket: Socket): boolean {
  return lingering.has(socket);
}

/** Call before answering: the answer says `Connection: close`, and the connection closes
 *  once the client has read it and stopped sending (or after LINGER_MS / LINGER_BYTES). */
export function closeAfterAnswer(req: IncomingMessage, res: ServerResponse): void {
  res.setHeader("connection", "close");
  const socket = req.socket;
  lingering.add(socket);
  // The rest of the body flows through the request and is counted and dropped.
  let dropped = 0;
  req.on("data", (chunk: Buffer) => {
    dropped += chunk.length;
    if (dropped > LINGER_BYTES) socket.destroy();
  });
  req.resume();
  res.once("finish", () => {
    // node:http would destroy the socket as soon as the answer's FIN is out (destroySoon):
    // instead, wait for the client to stop sending.
    socket.removeListener("finish", socket.destroy);
    const timer = setTimeout(() => socket.destroy(), LINGER_MS);
    timer.unref();
    socket.once("close", () => clearTimeout(timer));
    // The client read the answer and closed its side: nothing more is coming.
    socket.once("end", () => socket.destroy());
  });
}

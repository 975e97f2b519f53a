import { createRequire as __idbotCreateRequire } from 'node:module'; const require = __idbotCreateRequire(import.meta.url);
var __create = Object.create;
var __defProp = Object.defineProperty;
var __getOwnPropDesc = Object.getOwnPropertyDescriptor;
var __getOwnPropNames = Object.getOwnPropertyNames;
var __getProtoOf = Object.getPrototypeOf;
var __hasOwnProp = Object.prototype.hasOwnProperty;
var __require = /* @__PURE__ */ ((x) => typeof require !== "undefined" ? require : typeof Proxy !== "undefined" ? new Proxy(x, {
  get: (a, b) => (typeof require !== "undefined" ? require : a)[b]
}) : x)(function(x) {
  if (typeof require !== "undefined") return require.apply(this, arguments);
  throw Error('Dynamic require of "' + x + '" is not supported');
});
var __commonJS = (cb, mod) => function __require2() {
  try {
    return mod || (0, cb[__getOwnPropNames(cb)[0]])((mod = { exports: {} }).exports, mod), mod.exports;
  } catch (e) {
    throw mod = 0, e;
  }
};
var __copyProps = (to, from, except, desc) => {
  if (from && typeof from === "object" || typeof from === "function") {
    for (let key of __getOwnPropNames(from))
      if (!__hasOwnProp.call(to, key) && key !== except)
        __defProp(to, key, { get: () => from[key], enumerable: !(desc = __getOwnPropDesc(from, key)) || desc.enumerable });
  }
  return to;
};
var __toESM = (mod, isNodeMode, target) => (target = mod != null ? __create(__getProtoOf(mod)) : {}, __copyProps(
  // If the importer is in node compatibility mode or this is not an ESM
  // file that has been converted to a CommonJS file using a Babel-
  // compatible transform (i.e. "__esModule" has not been set), then set
  // "default" to the CommonJS "module.exports" for node compatibility.
  isNodeMode || !mod || !mod.__esModule ? __defProp(target, "default", { value: mod, enumerable: true }) : target,
  mod
));

// node_modules/tunnel/lib/tunnel.js
var require_tunnel = __commonJS({
  "node_modules/tunnel/lib/tunnel.js"(exports) {
    "use strict";
    var net = __require("net");
    var tls = __require("tls");
    var http = __require("http");
    var https = __require("https");
    var events = __require("events");
    var assert = __require("assert");
    var util = __require("util");
    exports.httpOverHttp = httpOverHttp2;
    exports.httpsOverHttp = httpsOverHttp2;
    exports.httpOverHttps = httpOverHttps2;
    exports.httpsOverHttps = httpsOverHttps2;
    function httpOverHttp2(options) {
      var agent = new TunnelingAgent(options);
      agent.request = http.request;
      return agent;
    }
    function httpsOverHttp2(options) {
      var agent = new TunnelingAgent(options);
      agent.request = http.request;
      agent.createSocket = createSecureSocket;
      agent.defaultPort = 443;
      return agent;
    }
    function httpOverHttps2(options) {
      var agent = new TunnelingAgent(options);
      agent.request = https.request;
      return agent;
    }
    function httpsOverHttps2(options) {
      var agent = new TunnelingAgent(options);
      agent.request = https.request;
      agent.createSocket = createSecureSocket;
      agent.defaultPort = 443;
      return agent;
    }
    function TunnelingAgent(options) {
      var self = this;
      self.options = options || {};
      self.proxyOptions = self.options.proxy || {};
      self.maxSockets = self.options.maxSockets || http.Agent.defaultMaxSockets;
      self.requests = [];
      self.sockets = [];
      self.on("free", function onFree(socket, host, port, localAddress) {
        var options2 = toOptions(host, port, localAddress);
        for (var i = 0, len = self.requests.length; i < len; ++i) {
          var pending = self.requests[i];
          if (pending.host === options2.host && pending.port === options2.port) {
            self.requests.splice(i, 1);
            pending.request.onSocket(socket);
            return;
          }
        }
        socket.destroy();
        self.removeSocket(socket);
      });
    }
    util.inherits(TunnelingAgent, events.EventEmitter);
    TunnelingAgent.prototype.addRequest = function addRequest(req, host, port, localAddress) {
      var self = this;
      var options = mergeOptions({ request: req }, self.options, toOptions(host, port, localAddress));
      if (self.sockets.length >= this.maxSockets) {
        self.requests.push(options);
        return;
      }
      self.createSocket(options, function(socket) {
        socket.on("free", onFree);
        socket.on("close", onCloseOrRemove);
        socket.on("agentRemove", onCloseOrRemove);
        req.onSocket(socket);
        function onFree() {
          self.emit("free", socket, options);
        }
        function onCloseOrRemove(err) {
          self.removeSocket(socket);
          socket.removeListener("free", onFree);
          socket.removeListener("close", onCloseOrRemove);
          socket.removeListener("agentRemove", onCloseOrRemove);
        }
      });
    };
    TunnelingAgent.prototype.createSocket = function createSocket(options, cb) {
      var self = this;
      var placeholder = {};
      self.sockets.push(placeholder);
      var connectOptions = mergeOptions({}, self.proxyOptions, {
        method: "CONNECT",
        path: options.host + ":" + options.port,
        agent: false,
        headers: {
          host: options.host + ":" + options.port
        }
      });
      if (options.localAddress) {
        connectOptions.localAddress = options.localAddress;
      }
      if (connectOptions.proxyAuth) {
        connectOptions.headers = connectOptions.headers || {};
        connectOptions.headers["Proxy-Authorization"] = "Basic " + new Buffer(connectOptions.proxyAuth).toString("base64");
      }
      debug2("making CONNECT request");
      var connectReq = self.request(connectOptions);
      connectReq.useChunkedEncodingByDefault = false;
      connectReq.once("response", onResponse);
      connectReq.once("upgrade", onUpgrade);
      connectReq.once("connect", onConnect);
      connectReq.once("error", onError);
      connectReq.end();
      function onResponse(res) {
        res.upgrade = true;
      }
      function onUpgrade(res, socket, head) {
        process.nextTick(function() {
          onConnect(res, socket, head);
        });
      }
      function onConnect(res, socket, head) {
        connectReq.removeAllListeners();
        socket.removeAllListeners();
        if (res.statusCode !== 200) {
          debug2(
            "tunneling socket could not be established, statusCode=%d",
            res.statusCode
          );
          socket.destroy();
          var error = new Error("tunneling socket could not be established, statusCode=" + res.statusCode);
          error.code = "ECONNRESET";
          options.request.emit("error", error);
          self.removeSocket(placeholder);
          return;
        }
        if (head.length > 0) {
          debug2("got illegal response body from proxy");
          socket.destroy();
          var error = new Error("got illegal response body from proxy");
          error.code = "ECONNRESET";
          options.request.emit("error", error);
          self.removeSocket(placeholder);
          return;
        }
        debug2("tunneling connection has established");
        self.sockets[self.sockets.indexOf(placeholder)] = socket;
        return cb(socket);
      }
      function onError(cause) {
        connectReq.removeAllListeners();
        debug2(
          "tunneling socket could not be established, cause=%s\n",
          cause.message,
          cause.stack
        );
        var error = new Error("tunneling socket could not be established, cause=" + cause.message);
        error.code = "ECONNRESET";
        options.request.emit("error", error);
        self.removeSocket(placeholder);
      }
    };
    TunnelingAgent.prototype.removeSocket = function removeSocket(socket) {
      var pos = this.sockets.indexOf(socket);
      if (pos === -1) {
        return;
      }
      this.sockets.splice(pos, 1);
      var pending = this.requests.shift();
      if (pending) {
        this.createSocket(pending, function(socket2) {
          pending.request.onSocket(socket2);
        });
      }
    };
    function createSecureSocket(options, cb) {
      var self = this;
      TunnelingAgent.prototype.createSocket.call(self, options, function(socket) {
        var hostHeader = options.request.getHeader("host");
        var tlsOptions = mergeOptions({}, self.options, {
          socket,
          servername: hostHeader ? hostHeader.replace(/:.*$/, "") : options.host
        });
        var secureSocket = tls.connect(0, tlsOptions);
        self.sockets[self.sockets.indexOf(socket)] = secureSocket;
        cb(secureSocket);
      });
    }
    function toOptions(host, port, localAddress) {
      if (typeof host === "string") {
        return {
          host,
          port,
          localAddress
        };
      }
      return host;
    }
    function mergeOptions(target) {
      for (var i = 1, len = arguments.length; i < len; ++i) {
        var overrides = arguments[i];
        if (typeof overrides === "object") {
          var keys = Object.keys(overrides);
          for (var j = 0, keyLen = keys.length; j < keyLen; ++j) {
            var k = keys[j];
            if (overrides[k] !== void 0) {
              target[k] = overrides[k];
            }
          }
        }
      }
      return target;
    }
    var debug2;
    if (process.env.NODE_DEBUG && /\btunnel\b/.test(process.env.NODE_DEBUG)) {
      debug2 = function() {
        var args = Array.prototype.slice.call(arguments);
        if (typeof args[0] === "string") {
          args[0] = "TUNNEL: " + args[0];
        } else {
          args.unshift("TUNNEL:");
        }
        console.error.apply(console, args);
      };
    } else {
      debug2 = function() {
      };
    }
    exports.debug = debug2;
  }
});

// node_modules/tunnel/index.js
var require_tunnel2 = __commonJS({
  "node_modules/tunnel/index.js"(exports, module) {
    module.exports = require_tunnel();
  }
});

// node_modules/@actions/core/lib/command.js
import * as os from "os";

// node_modules/@actions/core/lib/utils.js
function toCommandValue(input) {
  if (input === null || input === void 0) {
    return "";
  } else if (typeof input === "string" || input instanceof String) {
    return input;
  }
  return JSON.stringify(input);
}
function toCommandProperties(annotationProperties) {
  if (!Object.keys(annotationProperties).length) {
    return {};
  }
  return {
    title: annotationProperties.title,
    file: annotationProperties.file,
    line: annotationProperties.startLine,
    endLine: annotationProperties.endLine,
    col: annotationProperties.startColumn,
    endColumn: annotationProperties.endColumn
  };
}

// node_modules/@actions/core/lib/command.js
function issueCommand(command, properties, message) {
  const cmd = new Command(command, properties, message);
  process.stdout.write(cmd.toString() + os.EOL);
}
var CMD_STRING = "::";
var Command = class {
  constructor(command, properties, message) {
    if (!command) {
      command = "missing.command";
    }
    this.command = command;
    this.properties = properties;
    this.message = message;
  }
  toString() {
    let cmdStr = CMD_STRING + this.command;
    if (this.properties && Object.keys(this.properties).length > 0) {
      cmdStr += " ";
      let first = true;
      for (const key in this.properties) {
        if (this.properties.hasOwnProperty(key)) {
          const val = this.properties[key];
          if (val) {
            if (first) {
              first = false;
            } else {
              cmdStr += ",";
            }
            cmdStr += `${key}=${escapeProperty(val)}`;
          }
        }
      }
    }
    cmdStr += `${CMD_STRING}${escapeData(this.message)}`;
    return cmdStr;
  }
};
function escapeData(s) {
  return toCommandValue(s).replace(/%/g, "%25").replace(/\r/g, "%0D").replace(/\n/g, "%0A");
}
function escapeProperty(s) {
  return toCommandValue(s).replace(/%/g, "%25").replace(/\r/g, "%0D").replace(/\n/g, "%0A").replace(/:/g, "%3A").replace(/,/g, "%2C");
}

// node_modules/@actions/core/lib/core.js
import * as os3 from "os";

// node_modules/@actions/http-client/lib/index.js
var tunnel = __toESM(require_tunnel2(), 1);
var HttpCodes;
(function(HttpCodes2) {
  HttpCodes2[HttpCodes2["OK"] = 200] = "OK";
  HttpCodes2[HttpCodes2["MultipleChoices"] = 300] = "MultipleChoices";
  HttpCodes2[HttpCodes2["MovedPermanently"] = 301] = "MovedPermanently";
  HttpCodes2[HttpCodes2["ResourceMoved"] = 302] = "ResourceMoved";
  HttpCodes2[HttpCodes2["SeeOther"] = 303] = "SeeOther";
  HttpCodes2[HttpCodes2["NotModified"] = 304] = "NotModified";
  HttpCodes2[HttpCodes2["UseProxy"] = 305] = "UseProxy";
  HttpCodes2[HttpCodes2["SwitchProxy"] = 306] = "SwitchProxy";
  HttpCodes2[HttpCodes2["TemporaryRedirect"] = 307] = "TemporaryRedirect";
  HttpCodes2[HttpCodes2["PermanentRedirect"] = 308] = "PermanentRedirect";
  HttpCodes2[HttpCodes2["BadRequest"] = 400] = "BadRequest";
  HttpCodes2[HttpCodes2["Unauthorized"] = 401] = "Unauthorized";
  HttpCodes2[HttpCodes2["PaymentRequired"] = 402] = "PaymentRequired";
  HttpCodes2[HttpCodes2["Forbidden"] = 403] = "Forbidden";
  HttpCodes2[HttpCodes2["NotFound"] = 404] = "NotFound";
  HttpCodes2[HttpCodes2["MethodNotAllowed"] = 405] = "MethodNotAllowed";
  HttpCodes2[HttpCodes2["NotAcceptable"] = 406] = "NotAcceptable";
  HttpCodes2[HttpCodes2["ProxyAuthenticationRequired"] = 407] = "ProxyAuthenticationRequired";
  HttpCodes2[HttpCodes2["RequestTimeout"] = 408] = "RequestTimeout";
  HttpCodes2[HttpCodes2["Conflict"] = 409] = "Conflict";
  HttpCodes2[HttpCodes2["Gone"] = 410] = "Gone";
  HttpCodes2[HttpCodes2["TooManyRequests"] = 429] = "TooManyRequests";
  HttpCodes2[HttpCodes2["InternalServerError"] = 500] = "InternalServerError";
  HttpCodes2[HttpCodes2["NotImplemented"] = 501] = "NotImplemented";
  HttpCodes2[HttpCodes2["BadGateway"] = 502] = "BadGateway";
  HttpCodes2[HttpCodes2["ServiceUnavailable"] = 503] = "ServiceUnavailable";
  HttpCodes2[HttpCodes2["GatewayTimeout"] = 504] = "GatewayTimeout";
})(HttpCodes || (HttpCodes = {}));
var Headers;
(function(Headers2) {
  Headers2["Accept"] = "accept";
  Headers2["ContentType"] = "content-type";
})(Headers || (Headers = {}));
var MediaTypes;
(function(MediaTypes2) {
  MediaTypes2["ApplicationJson"] = "application/json";
})(MediaTypes || (MediaTypes = {}));
var HttpRedirectCodes = [
  HttpCodes.MovedPermanently,
  HttpCodes.ResourceMoved,
  HttpCodes.SeeOther,
  HttpCodes.TemporaryRedirect,
  HttpCodes.PermanentRedirect
];
var HttpResponseRetryCodes = [
  HttpCodes.BadGateway,
  HttpCodes.ServiceUnavailable,
  HttpCodes.GatewayTimeout
];

// node_modules/@actions/core/lib/summary.js
import { EOL as EOL2 } from "os";
import { constants, promises } from "fs";
var __awaiter = function(thisArg, _arguments, P, generator) {
  function adopt(value) {
    return value instanceof P ? value : new P(function(resolve2) {
      resolve2(value);
    });
  }
  return new (P || (P = Promise))(function(resolve2, reject) {
    function fulfilled(value) {
      try {
        step(generator.next(value));
      } catch (e) {
        reject(e);
      }
    }
    function rejected(value) {
      try {
        step(generator["throw"](value));
      } catch (e) {
        reject(e);
      }
    }
    function step(result) {
      result.done ? resolve2(result.value) : adopt(result.value).then(fulfilled, rejected);
    }
    step((generator = generator.apply(thisArg, _arguments || [])).next());
  });
};
var { access, appendFile, writeFile } = promises;
var SUMMARY_ENV_VAR = "GITHUB_STEP_SUMMARY";
var Summary = class {
  constructor() {
    this._buffer = "";
  }
  /**
   * Finds the summary file path from the environment, rejects if env var is not found or file does not exist
   * Also checks r/w permissions.
   *
   * @returns step summary file path
   */
  filePath() {
    return __awaiter(this, void 0, void 0, function* () {
      if (this._filePath) {
        return this._filePath;
      }
      const pathFromEnv = process.env[SUMMARY_ENV_VAR];
      if (!pathFromEnv) {
        throw new Error(`Unable to find environment variable for $${SUMMARY_ENV_VAR}. Check if your runtime environment supports job summaries.`);
      }
      try {
        yield access(pathFromEnv, constants.R_OK | constants.W_OK);
      } catch (_a) {
        throw new Error(`Unable to access summary file: '${pathFromEnv}'. Check if the file has correct read/write permissions.`);
      }
      this._filePath = pathFromEnv;
      return this._filePath;
    });
  }
  /**
   * Wraps content in an HTML tag, adding any HTML attributes
   *
   * @param {string} tag HTML tag to wrap
   * @param {string | null} content content within the tag
   * @param {[attribute: string]: string} attrs key-value list of HTML attributes to add
   *
   * @returns {string} content wrapped in HTML element
   */
  wrap(tag, content, attrs = {}) {
    const htmlAttrs = Object.entries(attrs).map(([key, value]) => ` ${key}="${value}"`).join("");
    if (!content) {
      return `<${tag}${htmlAttrs}>`;
    }
    return `<${tag}${htmlAttrs}>${content}</${tag}>`;
  }
  /**
   * Writes text in the buffer to the summary buffer file and empties buffer. Will append by default.
   *
   * @param {SummaryWriteOptions} [options] (optional) options for write operation
   *
   * @returns {Promise<Summary>} summary instance
   */
  write(options) {
    return __awaiter(this, void 0, void 0, function* () {
      const overwrite = !!(options === null || options === void 0 ? void 0 : options.overwrite);
      const filePath = yield this.filePath();
      const writeFunc = overwrite ? writeFile : appendFile;
      yield writeFunc(filePath, this._buffer, { encoding: "utf8" });
      return this.emptyBuffer();
    });
  }
  /**
   * Clears the summary buffer and wipes the summary file
   *
   * @returns {Summary} summary instance
   */
  clear() {
    return __awaiter(this, void 0, void 0, function* () {
      return this.emptyBuffer().write({ overwrite: true });
    });
  }
  /**
   * Returns the current summary buffer as a string
   *
   * @returns {string} string of summary buffer
   */
  stringify() {
    return this._buffer;
  }
  /**
   * If the summary buffer is empty
   *
   * @returns {boolen} true if the buffer is empty
   */
  isEmptyBuffer() {
    return this._buffer.length === 0;
  }
  /**
   * Resets the summary buffer without writing to summary file
   *
   * @returns {Summary} summary instance
   */
  emptyBuffer() {
    this._buffer = "";
    return this;
  }
  /**
   * Adds raw text to the summary buffer
   *
   * @param {string} text content to add
   * @param {boolean} [addEOL=false] (optional) append an EOL to the raw text (default: false)
   *
   * @returns {Summary} summary instance
   */
  addRaw(text, addEOL = false) {
    this._buffer += text;
    return addEOL ? this.addEOL() : this;
  }
  /**
   * Adds the operating system-specific end-of-line marker to the buffer
   *
   * @returns {Summary} summary instance
   */
  addEOL() {
    return this.addRaw(EOL2);
  }
  /**
   * Adds an HTML codeblock to the summary buffer
   *
   * @param {string} code content to render within fenced code block
   * @param {string} lang (optional) language to syntax highlight code
   *
   * @returns {Summary} summary instance
   */
  addCodeBlock(code, lang) {
    const attrs = Object.assign({}, lang && { lang });
    const element = this.wrap("pre", this.wrap("code", code), attrs);
    return this.addRaw(element).addEOL();
  }
  /**
   * Adds an HTML list to the summary buffer
   *
   * @param {string[]} items list of items to render
   * @param {boolean} [ordered=false] (optional) if the rendered list should be ordered or not (default: false)
   *
   * @returns {Summary} summary instance
   */
  addList(items, ordered = false) {
    const tag = ordered ? "ol" : "ul";
    const listItems = items.map((item) => this.wrap("li", item)).join("");
    const element = this.wrap(tag, listItems);
    return this.addRaw(element).addEOL();
  }
  /**
   * Adds an HTML table to the summary buffer
   *
   * @param {SummaryTableCell[]} rows table rows
   *
   * @returns {Summary} summary instance
   */
  addTable(rows) {
    const tableBody = rows.map((row) => {
      const cells = row.map((cell) => {
        if (typeof cell === "string") {
          return this.wrap("td", cell);
        }
        const { header, data, colspan, rowspan } = cell;
        const tag = header ? "th" : "td";
        const attrs = Object.assign(Object.assign({}, colspan && { colspan }), rowspan && { rowspan });
        return this.wrap(tag, data, attrs);
      }).join("");
      return this.wrap("tr", cells);
    }).join("");
    const element = this.wrap("table", tableBody);
    return this.addRaw(element).addEOL();
  }
  /**
   * Adds a collapsable HTML details element to the summary buffer
   *
   * @param {string} label text for the closed state
   * @param {string} content collapsable content
   *
   * @returns {Summary} summary instance
   */
  addDetails(label, content) {
    const element = this.wrap("details", this.wrap("summary", label) + content);
    return this.addRaw(element).addEOL();
  }
  /**
   * Adds an HTML image tag to the summary buffer
   *
   * @param {string} src path to the image you to embed
   * @param {string} alt text description of the image
   * @param {SummaryImageOptions} options (optional) addition image attributes
   *
   * @returns {Summary} summary instance
   */
  addImage(src, alt, options) {
    const { width, height } = options || {};
    const attrs = Object.assign(Object.assign({}, width && { width }), height && { height });
    const element = this.wrap("img", null, Object.assign({ src, alt }, attrs));
    return this.addRaw(element).addEOL();
  }
  /**
   * Adds an HTML section heading element
   *
   * @param {string} text heading text
   * @param {number | string} [level=1] (optional) the heading level, default: 1
   *
   * @returns {Summary} summary instance
   */
  addHeading(text, level) {
    const tag = `h${level}`;
    const allowedTag = ["h1", "h2", "h3", "h4", "h5", "h6"].includes(tag) ? tag : "h1";
    const element = this.wrap(allowedTag, text);
    return this.addRaw(element).addEOL();
  }
  /**
   * Adds an HTML thematic break (<hr>) to the summary buffer
   *
   * @returns {Summary} summary instance
   */
  addSeparator() {
    const element = this.wrap("hr", null);
    return this.addRaw(element).addEOL();
  }
  /**
   * Adds an HTML line break (<br>) to the summary buffer
   *
   * @returns {Summary} summary instance
   */
  addBreak() {
    const element = this.wrap("br", null);
    return this.addRaw(element).addEOL();
  }
  /**
   * Adds an HTML blockquote to the summary buffer
   *
   * @param {string} text quote text
   * @param {string} cite (optional) citation url
   *
   * @returns {Summary} summary instance
   */
  addQuote(text, cite) {
    const attrs = Object.assign({}, cite && { cite });
    const element = this.wrap("blockquote", text, attrs);
    return this.addRaw(element).addEOL();
  }
  /**
   * Adds an HTML anchor tag to the summary buffer
   *
   * @param {string} text link text/content
   * @param {string} href hyperlink
   *
   * @returns {Summary} summary instance
   */
  addLink(text, href) {
    const element = this.wrap("a", text, { href });
    return this.addRaw(element).addEOL();
  }
};
var _summary = new Summary();

// node_modules/@actions/core/lib/platform.js
import os2 from "os";

// node_modules/@actions/io/lib/io-util.js
import * as fs from "fs";
var { chmod, copyFile, lstat, mkdir, open, readdir, rename, rm, rmdir, stat, symlink, unlink } = fs.promises;
var IS_WINDOWS = process.platform === "win32";
var READONLY = fs.constants.O_RDONLY;

// node_modules/@actions/exec/lib/toolrunner.js
var IS_WINDOWS2 = process.platform === "win32";

// node_modules/@actions/core/lib/platform.js
var platform = os2.platform();
var arch = os2.arch();

// node_modules/@actions/core/lib/core.js
var ExitCode;
(function(ExitCode2) {
  ExitCode2[ExitCode2["Success"] = 0] = "Success";
  ExitCode2[ExitCode2["Failure"] = 1] = "Failure";
})(ExitCode || (ExitCode = {}));
function warning(message, properties = {}) {
  issueCommand("warning", toCommandProperties(properties), message instanceof Error ? message.toString() : message);
}
function info(message) {
  process.stdout.write(message + os3.EOL);
}
function getState(name) {
  return process.env[`STATE_${name}`] || "";
}

// src/client/files.ts
import { constants as constants3 } from "node:fs";
import {
  lstat as lstat2,
  mkdir as mkdir2,
  mkdtemp,
  open as open2,
  readdir as readdir2,
  realpath,
  rename as rename2,
  rmdir as rmdir2,
  unlink as unlink2
} from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
var MANIFEST_NAME = ".idbot-manifest.json";
var MANIFEST_VERSION = 1;
var UnsafePathError = class extends Error {
  constructor(path, reason) {
    super(`unsafe path ${JSON.stringify(path)}: ${reason}`);
    this.path = path;
    this.reason = reason;
  }
  path;
  reason;
  name = "UnsafePathError";
  code = "ERR_IDBOT_UNSAFE_PATH";
};
var ManifestError = class extends Error {
  constructor(path, reason) {
    super(`manifest ${path} ${reason}`);
    this.path = path;
  }
  path;
  name = "ManifestError";
  code = "ERR_IDBOT_MANIFEST";
};
var IS_WINDOWS3 = process.platform === "win32";
var O_NOFOLLOW = constants3.O_NOFOLLOW ?? 0;
var O_DIRECTORY = constants3.O_DIRECTORY ?? 0;
var CREATE_FLAGS = constants3.O_WRONLY | constants3.O_CREAT | constants3.O_EXCL | O_NOFOLLOW;
var MAX_MANIFEST_BYTES = 1 << 20;
var TEMP_NAME = /^(.+)\.tmp-[0-9a-f]{12}$/;
var WINDOWS_DEVICE = /^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$/i;
var WINDOWS_FORBIDDEN = /[<>"|?*]/;
async function readManifest(dir) {
  const path = join(resolve(dir), MANIFEST_NAME);
  const st = await lstatOrUndefined(path);
  if (st === void 0) return void 0;
  if (!st.isFile())
    throw new ManifestError(path, st.isSymbolicLink() ? "is a symbolic link" : "is not a regular file");
  const fh = await open2(path, constants3.O_RDONLY | O_NOFOLLOW);
  let text;
  try {
    const fst = await fh.stat();
    if (!fst.isFile()) throw new ManifestError(path, "is not a regular file");
    if (fst.size > MAX_MANIFEST_BYTES)
      throw new ManifestError(path, `is larger than ${MAX_MANIFEST_BYTES} bytes`);
    text = await fh.readFile("utf8");
  } finally {
    await fh.close();
  }
  return parseManifest(text, path);
}
async function cleanupDir(dir) {
  const root = resolve(dir);
  return withDirLock(root, async () => {
    const result = { removed: [], missing: [], refused: [], kept: [], dirRemoved: false };
    const st = await lstatOrUndefined(root);
    if (st === void 0) return result;
    assertOwnedDir(st, root);
    const manifest = await readManifest(root);
    if (manifest !== void 0) {
      let incomplete = false;
      const record = (rel, outcome) => {
        if (outcome === "failed") incomplete = true;
        else if (outcome !== "notEmpty") result[outcome].push(rel);
      };
      const files = unique(manifest.files);
      for (const rel of files) record(rel, await removeEntry(root, rel, "file"));
      if (!await removeTempLeftovers(root, files, result.removed)) incomplete = true;
      const dirs = unique(manifest.dirs).sort((a, b) => b.split("/").length - a.split("/").length);
      for (const rel of dirs) record(rel, await removeEntry(root, rel, "dir"));
      if (!incomplete) {
        try {
          await retryOnWindows(() => unlink2(join(root, MANIFEST_NAME)));
          result.removed.push(MANIFEST_NAME);
        } catch {
        }
      }
    }
    result.kept = await listTree(root);
    if (result.kept.length === 0) {
      try {
        await rmdir2(root);
        result.dirRemoved = true;
      } catch {
      }
    }
    return result;
  });
}
function pathProblem(p) {
  if (p.length === 0) return "empty path";
  if (p.length > 1024) return "longer than 1024 characters";
  for (let i = 0; i < p.length; i++) {
    const c = p.charCodeAt(i);
    if (c < 32 || c === 127) return "contains a control character (NUL, newline, ...)";
  }
  if (p.includes("\\")) return 'contains "\\": use "/" as the separator';
  if (p.includes(":")) return 'contains ":" (drive letters and Windows streams are not allowed)';
  if (p.startsWith("/")) return "absolute paths are not allowed, names are relative to the directory";
  for (const seg of p.split("/")) {
    if (seg === "") return "empty segment (leading, trailing or double slash)";
    if (seg === "." || seg === "..") return `"${seg}" segments are not allowed`;
    if (Buffer.byteLength(seg) > 200)
      return "a segment is longer than 200 bytes (room is kept for the temp suffix)";
    if (seg.endsWith(".") || seg.endsWith(" "))
      return "a segment ends with a dot or a space (Windows drops them)";
    if (WINDOWS_FORBIDDEN.test(seg)) return 'contains one of < > " | ? * (invalid on Windows)';
    if (WINDOWS_DEVICE.test(seg)) return `"${seg}" is a reserved device name on Windows`;
  }
  if (p === MANIFEST_NAME) return "reserved for the manifest";
  return void 0;
}
function assertOwnedDir(st, abs) {
  if (st.isSymbolicLink())
    throw new UnsafePathError(abs, "is a symbolic link (or junction), not following it");
  if (!st.isDirectory()) throw new UnsafePathError(abs, "is not a directory");
  const uid = IS_WINDOWS3 ? void 0 : process.getuid?.();
  if (uid !== void 0 && st.uid !== uid) {
    throw new UnsafePathError(abs, `is owned by uid ${st.uid}, not by this process (uid ${uid})`);
  }
}
function parseManifest(text, path) {
  let value;
  try {
    value = JSON.parse(text);
  } catch {
    throw new ManifestError(path, "is not valid JSON");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ManifestError(path, "is not a JSON object");
  }
  const m = value;
  if (m["version"] !== MANIFEST_VERSION) {
    throw new ManifestError(path, `has unsupported version ${JSON.stringify(m["version"])}`);
  }
  const { createdAt, updatedAt, files, dirs } = m;
  if (typeof createdAt !== "string") throw new ManifestError(path, "has no createdAt");
  if (!isStringArray(files) || !isStringArray(dirs)) {
    throw new ManifestError(path, "must list files and dirs as arrays of strings");
  }
  return {
    version: MANIFEST_VERSION,
    createdAt,
    updatedAt: typeof updatedAt === "string" ? updatedAt : createdAt,
    files: [...files],
    dirs: [...dirs]
  };
}
function isStringArray(v) {
  return Array.isArray(v) && v.every((x) => typeof x === "string");
}
async function removeEntry(root, rel, kind) {
  if (pathProblem(rel) !== void 0) return "refused";
  const segs = rel.split("/");
  let abs = root;
  for (const seg of segs.slice(0, -1)) {
    abs = join(abs, seg);
    const st2 = await lstatOrUndefined(abs);
    if (st2 === void 0) return "missing";
    if (st2.isSymbolicLink() || !st2.isDirectory()) return "refused";
  }
  abs = join(abs, segs[segs.length - 1]);
  const st = await lstatOrUndefined(abs);
  if (st === void 0) return "missing";
  try {
    if (st.isDirectory()) {
      if (kind === "file") return "refused";
      await rmdir2(abs);
    } else {
      await retryOnWindows(() => unlink2(abs));
    }
    return "removed";
  } catch (err) {
    const code = errorCode(err);
    if (code === "ENOENT") return "missing";
    if (code === "ENOTEMPTY" || code === "EEXIST") return "notEmpty";
    return "failed";
  }
}
async function removeTempLeftovers(root, files, removed) {
  const byDir = /* @__PURE__ */ new Map([["", /* @__PURE__ */ new Set([MANIFEST_NAME])]]);
  for (const rel of files) {
    if (pathProblem(rel) !== void 0) continue;
    const cut = rel.lastIndexOf("/");
    const parent = cut < 0 ? "" : rel.slice(0, cut);
    const names = byDir.get(parent) ?? /* @__PURE__ */ new Set();
    names.add(rel.slice(cut + 1));
    byDir.set(parent, names);
  }
  let ok = true;
  for (const [parent, names] of byDir) {
    const segs = parent === "" ? [] : parent.split("/");
    let abs = root;
    let safe = true;
    for (const seg of segs) {
      abs = join(abs, seg);
      const st = await lstatOrUndefined(abs);
      if (st === void 0 || st.isSymbolicLink() || !st.isDirectory()) safe = false;
      if (!safe) break;
    }
    if (!safe) continue;
    const entries = await readdir2(abs, { withFileTypes: true }).catch(() => []);
    for (const entry of entries) {
      const base = TEMP_NAME.exec(entry.name)?.[1];
      if (base === void 0 || !names.has(base) || entry.isDirectory()) continue;
      try {
        await retryOnWindows(() => unlink2(join(abs, entry.name)));
        removed.push(parent === "" ? entry.name : `${parent}/${entry.name}`);
      } catch (err) {
        if (errorCode(err) !== "ENOENT") ok = false;
      }
    }
  }
  return ok;
}
async function listTree(root) {
  const out = [];
  const walk = async (abs, rel, depth) => {
    const entries = await readdir2(abs, { withFileTypes: true }).catch(() => []);
    for (const entry of entries) {
      const r = rel === "" ? entry.name : `${rel}/${entry.name}`;
      out.push(r);
      if (entry.isDirectory() && depth < 32) await walk(join(abs, entry.name), r, depth + 1);
    }
  };
  await walk(root, "", 0);
  return out.sort();
}
async function lstatOrUndefined(path) {
  try {
    return await lstat2(path);
  } catch (err) {
    const code = errorCode(err);
    if (code === "ENOENT" || code === "ENOTDIR") return void 0;
    throw err;
  }
}
async function retryOnWindows(fn) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      const code = errorCode(err);
      if (!IS_WINDOWS3 || attempt >= 10 || code !== "EPERM" && code !== "EACCES" && code !== "EBUSY")
        throw err;
      await delay(20 * attempt);
    }
  }
}
function errorCode(err) {
  return typeof err === "object" && err !== null && "code" in err && typeof err.code === "string" ? err.code : void 0;
}
function unique(items) {
  return [...new Set(items)];
}
var dirLocks = /* @__PURE__ */ new Map();
async function withDirLock(key, fn) {
  const previous = dirLocks.get(key) ?? Promise.resolve();
  const run2 = previous.then(fn);
  const tail = run2.then(
    () => void 0,
    () => void 0
  );
  dirLocks.set(key, tail);
  try {
    return await run2;
  } finally {
    if (dirLocks.get(key) === tail) dirLocks.delete(key);
  }
}

// src/action/post.ts
async function run() {
  const dir = getState("identity-dir");
  if (!dir) {
    info("idbot: nothing to clean up (the main step wrote no identity)");
    return;
  }
  if (getState("cleanup") === "false" || process.env.IDBOT_SKIP_CLEANUP === "true") {
    info(`idbot: cleanup disabled; leaving ${dir}`);
    return;
  }
  const r = await cleanupDir(dir);
  info(
    `idbot: removed ${r.removed.length} files from ${dir}${r.missing.length ? ` (${r.missing.length} already gone)` : ""}`
  );
  if (r.refused.length > 0) warning(`idbot: left alone (unsafe to remove): ${r.refused.join(", ")}`);
  if (r.kept.length > 0) info(`idbot: kept files it did not write: ${r.kept.join(", ")}`);
}
run().catch((e) => warning(`idbot cleanup: ${e instanceof Error ? e.message : String(e)}`));

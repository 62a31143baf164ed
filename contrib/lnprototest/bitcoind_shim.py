#!/usr/bin/env python3
"""`bitcoind` stand-in for lnprototest: runs the project's regtestd and a thin
JSON-RPC proxy in front of it.

lnprototest starts `bitcoind -datadir=DIR -server -regtest -logtimestamps
-nolisten`, reads rpcport/rpcuser/rpcpassword from DIR/bitcoin.conf, waits for
"Done loading" on stdout, then calls createwallet + getnewaddress (wallet RPCs
regtestd does not have).  The proxy answers those two itself (a fixed address
nobody spends from) and forwards every other call unchanged to regtestd, which
listens on a private port.  `stop` is answered only after regtestd has exited,
so lnprototest's rmtree of DIR/regtest does not race the shutdown.
"""
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

# the checkout's venv (./run test --version makes it), unless REGTESTD says otherwise
REGTESTD = os.environ.get("REGTESTD", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                                   ".venv", "bin", "regtestd"))

# the P2WPKH address of block 1's coinbase key in lnprototest (keyhash
# 19f5016f07fe815f611df3a2a0802dbd74e634c4): nobody spends from it
ADDRESS = "bcrt1qr86szmc8l6q47cga7w32pqpdh46wvdxys37c2a"


def read_conf(datadir):
    conf, section = {}, ""
    try:
        with open(os.path.join(datadir, "bitcoin.conf")) as f:
            for line in f:
                line = line.split("#", 1)[0].strip()
                if line.startswith("[") and line.endswith("]"):
                    section = line[1:-1]
                elif "=" in line and section in ("", "regtest"):
                    k, v = line.split("=", 1)
                    conf[k.strip()] = v.strip()
    except FileNotFoundError:
        pass
    return conf


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    datadir = None
    for a in sys.argv[1:]:
        if a.startswith("-datadir="):
            datadir = a.split("=", 1)[1]
    assert datadir, "need -datadir"
    conf = read_conf(datadir)
    user, pw = conf.get("rpcuser", "rpcuser"), conf.get("rpcpassword", "rpcpass")
    port = int(conf.get("rpcport", "18443"))
    inner = free_port()
    logf = open(os.path.join(datadir, "regtestd.out"), "ab")
    child = subprocess.Popen([REGTESTD, "-regtest", f"-datadir={datadir}", f"-rpcuser={user}",
                              f"-rpcpassword={pw}", f"-rpcport={inner}"],
                             stdout=logf, stderr=logf)
    inner_url = f"http://127.0.0.1:{inner}/"
    import base64
    auth = "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()

    def call_inner(body: bytes):
        req = urllib.request.Request(inner_url, data=body, headers={
            "Authorization": auth, "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    # Wait for regtestd's RPC.
    deadline = time.time() + 60
    while True:
        if child.poll() is not None:
            sys.exit(f"regtestd exited {child.returncode}")
        try:
            st, _ = call_inner(b'{"jsonrpc":"1.0","id":0,"method":"getblockcount","params":[]}')
            if st == 200:
                break
        except OSError:
            pass
        if time.time() > deadline:
            child.kill()
            sys.exit("regtestd did not come up")
        time.sleep(0.2)

    stopping = threading.Event()

    def local(req):
        m = req.get("method")
        if m == "createwallet":
            return {"name": (req.get("params") or ["main"])[0], "warning": ""}
        if m in ("getnewaddress", "getrawchangeaddress"):
            return ADDRESS
        if m == "loadwallet":
            return {"name": (req.get("params") or ["main"])[0], "warning": ""}
        return NotImplemented

    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                req = json.loads(body)
            except ValueError:
                req = None
            status, out = None, None
            if isinstance(req, dict):
                res = local(req)
                if res is not NotImplemented:
                    status, out = 200, json.dumps({"result": res, "error": None, "id": req.get("id")}).encode()
            if out is None:
                status, out = call_inner(body)
                if isinstance(req, dict) and req.get("method") == "stop":
                    try:
                        child.wait(60)
                    except subprocess.TimeoutExpired:
                        child.kill()
                    stopping.set()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)
            self.wfile.flush()

    class S(http.server.ThreadingHTTPServer):
        allow_reuse_address = True
        daemon_threads = True

    srv = S(("127.0.0.1", port), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    print("init message: Done loading", flush=True)
    while not stopping.is_set() and child.poll() is None:
        stopping.wait(0.5)
    time.sleep(0.2)
    srv.shutdown()
    if child.poll() is None:
        child.terminate()
        child.wait(30)


if __name__ == "__main__":
    main()

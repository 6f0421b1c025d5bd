#!/usr/bin/python3
"""A DX-1 on an emulated USB bus: umockdev serves a test bed device with the ICD's
descriptors, and this process answers the usbdevfs ioctls of whatever runs under it
(dexad's real libusb and libudev code) by bridging the three endpoints to a dexa-sim
device socket. It must itself run under umockdev-wrapper: the test bed's uevents are
resolved through the preloaded libudev. A small control socket lets tests pull the cable, stall an endpoint,
swallow an OUT transfer (a timeout) or cut an IN transfer short.

usage: umockdev-wrapper /usr/bin/python3 dx1_usb_bridge.py --sim SIM.sock --control CTL.sock [--serial S] -- COMMAND ARGS...
Control commands (one per line, each answered with one line): plug, unplug,
stall EP, timeout EP, short EP BYTES, status.
"""
import argparse
import errno
import json
import os
import socket
import struct
import sys

import gi
gi.require_version("UMockdev", "1.0")
from gi.repository import GLib, UMockdev  # noqa: E402

SUBMITURB, REAPURB, REAPURBNDELAY, DISCARDURB, GET_CAPABILITIES = 0x8038550A, 0x4008550C, 0x4008550D, 0x550B, 0x8004551A
URB = struct.Struct("=BBxxiI4xQiiiiiIQ")  # struct usbdevfs_urb on x86_64, 56 bytes
RECORD = struct.Struct("<QBBI")           # sim link / capture record header (ICD section 7)
SYSPATH = "/devices/pci0000:00/0000:00:14.0/usb1/1-1"
DEVNODE = "/dev/bus/usb/001/002"


def data_of(d):
    # IoctlData.data is marshalled as a C string by the bindings (cut at the first NUL);
    # retrieve() returns every byte.
    return bytes(d.retrieve())


def descriptors(fw_major, fw_minor):
    device = bytes([18, 1, 0x00, 0x02, 0, 0, 0, 64, 0x09, 0x12, 0x8A, 0xDE, fw_minor, fw_major, 1, 2, 3, 1])
    config = bytes([9, 2, 39, 0, 1, 1, 0, 0xC0, 50])
    interface = bytes([9, 4, 0, 0, 3, 0xFF, 0, 0, 0])
    eps = b"".join(bytes([7, 5, ep, 2, 0x00, 0x02, 0]) for ep in (0x01, 0x81, 0x82))
    return (device + config + interface + eps).hex()


def description(serial, fw_major, fw_minor):
    return "\n".join([
        "P: " + SYSPATH, "N: bus/usb/001/002",
        "E: SUBSYSTEM=usb", "E: DEVTYPE=usb_device", "E: DRIVER=usb", "E: BUSNUM=001", "E: DEVNUM=002",
        "E: DEVNAME=" + DEVNODE, "E: ID_VENDOR_ID=1209", "E: ID_MODEL_ID=de8a", "E: ID_SERIAL_SHORT=" + serial,
        "A: idVendor=1209", "A: idProduct=de8a", "A: bcdDevice=%02x%02x" % (fw_major, fw_minor), "A: serial=" + serial,
        "A: busnum=1\\n", "A: devnum=2\\n", "A: bConfigurationValue=1\\n", "A: speed=480\\n",
        "H: descriptors=" + descriptors(fw_major, fw_minor), ""])


class Bridge:
    def __init__(self, args):
        self.args = args
        self.testbed = UMockdev.Testbed.new()
        self.handler = UMockdev.IoctlBase()
        self.handler.connect_after("handle-ioctl", self.on_ioctl)
        self.testbed.attach_ioctl(DEVNODE, self.handler)
        self.sim = None
        self.sim_watch = None
        self.link_buffer = bytearray()
        self.in_bytes = {0x81: bytearray(), 0x82: bytearray()}
        self.pending = {0x81: [], 0x82: []}   # submitted IN urbs: (urb data, buffer data)
        self.out_pending = []                 # swallowed OUT urbs (timeout fault)
        self.done = []                        # urbs ready to reap
        self.plugged = False
        self.held_out = args.unplugged
        self.faults = {"stall": set(), "timeout": set(), "short": {}}
        self.counts = {"submitted": 0, "reaped": 0, "discarded": 0, "out_bytes": 0, "in_bytes": 0}
        self.loop = GLib.MainLoop()
        # Every byte the simulator sent, per IN endpoint, for byte-for-byte comparisons.
        self.dump = None
        if args.dump:
            self.dump = {ep: open(os.path.join(args.dump, "ep%02x.bin" % ep), "wb") for ep in (0x81, 0x82)}
            # One line per IN urb with bytes handed to the host, in the order it was reaped:
            # endpoint, offset of its bytes in epNN.bin, length, buffer address. A capture that differs
            # from the dump is then placed: the wrong chunk (order) or the wrong bytes (memory).
            self.chunk_log = open(os.path.join(args.dump, "chunks.log"), "w")
        self.sent_offset = {0x81: 0, 0x82: 0}
        self.chunk_of = {}                    # id(urb) -> (ep, offset, n) until reaped

    # -- device presence --------------------------------------------------------------
    def plug(self):
        if self.plugged:
            return "ok"
        self.sim = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sim.connect(self.args.sim)
        self.sim.setblocking(False)
        self.sim_watch = GLib.io_add_watch(self.sim.fileno(), GLib.IO_IN | GLib.IO_HUP | GLib.IO_ERR, self.on_sim)
        self.plugged = True
        # add_from_string emits the "add" uevent itself.
        self.testbed.add_from_string(description(self.args.serial, 1, 4))
        self.syspath = "/sys" + SYSPATH
        return "ok"

    def try_replug(self):
        if self.plugged or self.held_out:
            return False
        try:
            self.plug()
        except OSError:
            return True   # not back yet: try again in 100 ms
        return False

    def unplug(self):
        if not self.plugged:
            return "ok"
        self.plugged = False
        for ep in self.pending:
            for urb, buf in self.pending[ep]:
                self.finish(urb, -errno.ENODEV, 0)
            self.pending[ep] = []
            # Dumped but never handed over: the chunk log's offsets skip them.
            self.sent_offset[ep] += len(self.in_bytes[ep])
            self.in_bytes[ep].clear()
        for urb in self.out_pending:
            self.finish(urb, -errno.ENODEV, 0)
        self.out_pending = []
        self.testbed.uevent(self.syspath, "remove")
        self.testbed.remove_device(self.syspath)
        if self.sim_watch:
            GLib.source_remove(self.sim_watch)
            self.sim_watch = None
        if self.sim:
            self.sim.close()
            self.sim = None
        return "ok"

    # -- simulator side ---------------------------------------------------------------
    def on_sim(self, fd, cond):
        try:
            data = self.sim.recv(65536) if self.sim else b""
        except BlockingIOError:
            return True
        except OSError:
            data = b""
        if not data:
            # The simulator dropped the link (RESET, or its own unplug): the device leaves
            # the bus and comes back when the simulator accepts a connection again.
            self.sim_watch = None
            self.unplug()
            GLib.timeout_add(100, self.try_replug)
            return False
        self.link_buffer += data
        while len(self.link_buffer) >= RECORD.size:
            _, ep, _, n = RECORD.unpack_from(self.link_buffer)
            if len(self.link_buffer) < RECORD.size + n:
                break
            payload = bytes(self.link_buffer[RECORD.size:RECORD.size + n])
            del self.link_buffer[:RECORD.size + n]
            if ep in self.in_bytes:
                self.in_bytes[ep] += payload
                if self.dump:
                    self.dump[ep].write(payload)
                    self.dump[ep].flush()
        self.fill()
        return True

    def fill(self):
        for ep in (0x81, 0x82):
            while self.pending[ep] and self.in_bytes[ep]:
                urb, buf = self.pending[ep].pop(0)
                length = URB.unpack(data_of(urb))[5]
                n = min(length, len(self.in_bytes[ep]))
                if ep in self.faults["short"]:
                    n = min(n, self.faults["short"].pop(ep))
                chunk = bytes(self.in_bytes[ep][:n])
                del self.in_bytes[ep][:n]
                buf.update(0, list(chunk))
                self.counts["in_bytes"] += n
                if n > 0:
                    # The buffer's address, not the urb's: libusb allocates a urb per submission.
                    self.chunk_of[id(urb)] = (ep, self.sent_offset[ep], n, URB.unpack(data_of(urb))[4])
                self.sent_offset[ep] += n
                self.finish(urb, 0, n)

    def finish(self, urb, status, actual):
        urb.update(4, list(struct.pack("=i", status)))
        urb.update(28, list(struct.pack("=i", actual)))
        self.done.append(urb)

    # -- usbdevfs ---------------------------------------------------------------------
    def on_ioctl(self, handler, client):
        request = client.get_request()
        arg = client.get_arg()
        if request == GET_CAPABILITIES:
            caps = arg.resolve(0, 4)
            caps.update(0, list(struct.pack("=I", 0x04 | 0x10)))  # no packet size limit, reap after disconnect
            client.complete(0, 0)
            return True
        if request == SUBMITURB:
            if not self.plugged:
                client.complete(-1, errno.ENODEV)
                return True
            urb = arg.resolve(0, URB.size)
            fields = URB.unpack(data_of(urb))
            ep, length = fields[1], fields[5]
            buf = urb.resolve(16, length) if length > 0 else None
            self.counts["submitted"] += 1
            if ep in self.faults["stall"]:
                self.faults["stall"].discard(ep)
                self.finish(urb, -errno.EPIPE, 0)
            elif ep & 0x80:
                self.pending.setdefault(ep, []).append((urb, buf))
                self.fill()
            elif ep in self.faults["timeout"]:
                self.faults["timeout"].discard(ep)
                self.out_pending.append(urb)  # never answered: the host's timeout discards it
            else:
                data = data_of(buf) if buf else b""
                self.counts["out_bytes"] += len(data)
                if self.sim:
                    try:
                        self.sim.sendall(RECORD.pack(0, ep, 0, len(data)) + data)
                    except OSError:
                        pass
                self.finish(urb, 0, length)
            client.complete(0, 0)
            return True
        if request in (REAPURB, REAPURBNDELAY):
            if not self.reap(arg, client, final=False):
                # Nothing yet: answer a little later, so libusb does not spin on a node that
                # never blocks (USB-TESTING.md).
                GLib.timeout_add(2, lambda: self.reap(arg, client, final=True) and False)
            return True
        if request == DISCARDURB:
            addr = struct.unpack("=Q", data_of(arg)[:8])[0]
            for ep in self.pending:
                for i, (urb, buf) in enumerate(self.pending[ep]):
                    if urb.client_addr == addr:
                        del self.pending[ep][i]
                        self.finish(urb, -errno.ENOENT, 0)
                        self.counts["discarded"] += 1
                        client.complete(0, 0)
                        return True
            for i, urb in enumerate(self.out_pending):
                if urb.client_addr == addr:
                    del self.out_pending[i]
                    self.finish(urb, -errno.ENOENT, 0)
                    self.counts["discarded"] += 1
                    client.complete(0, 0)
                    return True
            client.complete(-1, errno.EINVAL)
            return True
        return False

    def reap(self, arg, client, final):
        """Hands the oldest finished URB to a reap request; with `final`, answers EAGAIN when
        there is none. Returns whether the request was answered."""
        if self.done:
            urb = self.done.pop(0)
            slot = arg.resolve(0, 8)
            slot.set_ptr(0, urb)
            self.counts["reaped"] += 1
            chunk = self.chunk_of.pop(id(urb), None)
            if chunk and self.dump:
                self.chunk_log.write("%02x %d %d %x\n" % chunk)
                self.chunk_log.flush()
            client.complete(0, 0)
            return True
        if final:
            client.complete(-1, errno.EAGAIN)
            return True
        return False

    # -- control ------------------------------------------------------------------------
    def command(self, line):
        words = line.split()
        if not words:
            return ""
        try:
            if words[0] == "plug":
                self.held_out = False
                return self.plug()
            if words[0] == "unplug":
                self.held_out = True   # stays out until told otherwise
                return self.unplug()
            if words[0] in ("stall", "timeout"):
                self.faults[words[0]].add(int(words[1], 16))
                return "ok"
            if words[0] == "short":
                self.faults["short"][int(words[1], 16)] = int(words[2])
                return "ok"
            if words[0] == "status":
                pending = sum(len(v) for v in self.pending.values()) + len(self.out_pending)
                return json.dumps(dict(self.counts, plugged=self.plugged, pending=pending, ready=len(self.done)))
        except Exception as e:  # a handler that raises would end the emulation for the client
            return "error: %s" % e
        return "error: unknown command"

    def on_control(self, fd, cond):
        conn, _ = self.control.accept()
        data = b""
        while not data.endswith(b"\n"):
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
        for line in data.decode(errors="replace").splitlines():
            conn.sendall((self.command(line) + "\n").encode())
        conn.close()
        return True

    def run(self, command):
        self.control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if os.path.exists(self.args.control):
            os.unlink(self.args.control)
        self.control.bind(self.args.control)
        self.control.listen(8)
        GLib.io_add_watch(self.control.fileno(), GLib.IO_IN, self.on_control)
        if not self.args.unplugged:
            self.plug()
        # The test bed set UMOCKDEV_DIR in the C environment, which os.environ does not see.
        pid, _, _, _ = GLib.spawn_async(["umockdev-wrapper"] + command, envp=GLib.get_environ(),
                                        flags=GLib.SpawnFlags.SEARCH_PATH | GLib.SpawnFlags.DO_NOT_REAP_CHILD |
                                        GLib.SpawnFlags.CHILD_INHERITS_STDIN)
        self.status = 0

        def exited(pid, status):
            self.status = os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else status
            self.loop.quit()
        GLib.child_watch_add(GLib.PRIORITY_DEFAULT, pid, exited)
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, 15, lambda: (os.kill(pid, 15), True)[1])
        self.loop.run()
        return self.status


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sim", required=True)
    p.add_argument("--control", required=True)
    p.add_argument("--serial", default="DX1-000123")
    p.add_argument("--unplugged", action="store_true", help="start with the cable out")
    p.add_argument("--dump", help="folder for ep81.bin and ep82.bin: every byte the simulator sent")
    p.add_argument("command", nargs=argparse.REMAINDER)
    args = p.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        p.error("a command to run under umockdev is required")
    sys.exit(Bridge(args).run(command))


if __name__ == "__main__":
    main()

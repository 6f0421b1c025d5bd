import DXProtocol
import DXTransport
import Foundation
import Synchronization

/// The DX-1 behind a Unix socket, as `dexa-sim` serves it: the device socket carries the
/// sim-link records (see `SimLinkDecoder`), one host at a time; a second socket takes fault
/// commands in text, one per line (`FaultCommand`), and answers each with one line.
public final class SocketSimulator: Sendable {
    public let firmware: DX1Firmware
    public let devicePath: String
    public let controlPath: String?
    private let current = Mutex<HostConnection?>(nil)
    private let listeners = Mutex<[UnixSocket]>([])
    private let unplugged = Mutex(false)

    public init(devicePath: String, controlPath: String?, configuration: SimulatorConfiguration, clock: any Clock<Duration>,
                scene: any Scene = EmptyTable()) {
        self.devicePath = devicePath
        self.controlPath = controlPath
        self.firmware = DX1Firmware(configuration: configuration, clock: clock, scene: scene)
    }

    /// One host connection; the firmware reaches it through `CurrentLink`.
    /// The socket is closed when the last user lets go (see `SimLinkTransport.Connection`):
    /// a descriptor closed while a writer still held its number could name the next one.
    final class HostConnection: Sendable {
        let socket: UnixSocket
        init(socket: UnixSocket) { self.socket = socket }
        deinit { socket.close() }

        func emit(_ endpoint: Endpoint, _ bytes: [UInt8]) -> Bool {
            (try? socket.writeAll(CaptureRecord(tUs: 0, endpoint: endpoint, bytes: bytes).encoded)) != nil
        }
    }

    /// The link the firmware talks to: whichever host is connected now.
    final class CurrentLink: DeviceSideLink {
        let owner: SocketSimulator
        init(owner: SocketSimulator) { self.owner = owner }
        func emit(_ endpoint: Endpoint, _ bytes: [UInt8]) -> Bool {
            guard let c = owner.current.withLock({ $0 }) else { return false }
            return c.emit(endpoint, bytes)
        }
        func disconnect(reason: String) { owner.unplug() }
        func reconnect() { owner.plug() }
    }

    /// The cable is out: the device socket stops listening (a host's connect fails, as a
    /// USB open of a missing device does) and the connected host is dropped.
    func unplug() {
        unplugged.withLock { $0 = true }
        deviceListener.withLock { l in
            l?.shutdown()
            l?.close()
            l = nil
        }
        unlink(devicePath)
        current.withLock { c in
            c?.socket.shutdown()
            c = nil
        }
    }

    /// The cable is back: listen again.
    func plug() {
        let wasOut = unplugged.withLock { u in defer { u = false }; return u }
        if wasOut { try? startListening() }
    }

    private let deviceListener = Mutex<UnixSocket?>(nil)
    private let hostBytes = HostByteStream()

    /// Host bytes from whichever connection is current, in order, to the firmware.
    final class HostByteStream: Sendable {
        let stream: AsyncStream<[UInt8]>
        let continuation: AsyncStream<[UInt8]>.Continuation
        init() { (stream, continuation) = AsyncStream.makeStream() }
    }

    private func startListening() throws {
        let listener = try UnixSocket.listen(path: devicePath)
        deviceListener.withLock { $0 = listener }
        let hostCont = hostBytes.continuation
        startThread("dexa-sim-accept") { [self] in
            while let conn = listener.accept() {
                if unplugged.withLock({ $0 }) { conn.close(); continue }
                let host = HostConnection(socket: conn)
                current.withLock { old in
                    old?.socket.shutdown()
                    old = host
                }
                startThread("dexa-sim-host") { [self] in
                    var decoder = SimLinkDecoder()
                    reading: while true {
                        guard let bytes = try? conn.read(), !bytes.isEmpty else { break }
                        decoder.append(bytes)
                        do {
                            while let r = try decoder.next() {
                                if r.endpoint == .commandOut { hostCont.yield(r.bytes) }
                            }
                        } catch {
                            break reading
                        }
                    }
                    current.withLock { c in if c === host { c = nil } }
                    withExtendedLifetime(host) {}
                }
            }
        }
    }

    /// Serves until the task is cancelled.
    public func run() async throws {
        let controlListener = try controlPath.map { p throws(TransportError) in try UnixSocket.listen(path: p) }
        listeners.withLock { $0 = controlListener.map { [$0] } ?? [] }
        try startListening()
        await firmware.powerOn(link: CurrentLink(owner: self))
        if let controlListener {
            startThread("dexa-sim-control") { [self] in
                while let conn = controlListener.accept() {
                    startThread("dexa-sim-control-conn") { [self] in serveControl(conn) }
                }
            }
        }
        let hostCont = hostBytes.continuation
        await withTaskCancellationHandler {
            for await bytes in hostBytes.stream { await firmware.receive(bytes) }
        } onCancel: {
            hostCont.finish()
        }
        stop()
    }

    public func stop() {
        deviceListener.withLock { l in l?.shutdown(); l?.close(); l = nil }
        for l in listeners.withLock({ $0 }) { l.shutdown(); l.close() }
        unlink(devicePath)
        if let controlPath { unlink(controlPath) }
        current.withLock { $0?.socket.shutdown() }
    }

    private func serveControl(_ conn: UnixSocket) {
        var pending: [UInt8] = []
        while let bytes = try? conn.read(), !bytes.isEmpty {
            pending.append(contentsOf: bytes)
            if pending.count > 65_536 { break }
            while let nl = pending.firstIndex(of: 0x0A) {
                let line = String(decoding: pending[..<nl], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
                pending.removeSubrange(...nl)
                let reply = blockingReply(to: line)
                guard (try? conn.writeAll(Array((reply + "\n").utf8))) != nil else { conn.close(); return }
            }
        }
        conn.close()
    }

    /// Runs one control line against the firmware and waits for its answer.
    private func blockingReply(to line: String) -> String {
        let box = ReplyBox()
        let done = DispatchSemaphore(value: 0)
        Task { [firmware] in
            box.set(await SimulatorControl.reply(to: line, firmware: firmware))
            done.signal()
        }
        done.wait()
        return box.get()
    }

    private func startThread(_ name: String, _ body: @escaping @Sendable () -> Void) {
        let t = Thread(block: body)
        t.name = name
        t.start()
    }
}

final class ReplyBox: Sendable {
    private let value = Mutex("")
    func set(_ s: String) { value.withLock { $0 = s } }
    func get() -> String { value.withLock { $0 } }
}

/// The text control language of the simulator, shared by its socket and standard input.
public enum SimulatorControl {
    public static func reply(to line: String, firmware: DX1Firmware) async -> String {
        let trimmed = line.trimmingCharacters(in: .whitespaces)
        switch trimmed.lowercased() {
        case "": return ""
        case "help": return FaultCommand.help.replacingOccurrences(of: "\n", with: "\n# ")
        case let t where t.hasPrefix("phantom "):
            let name = String(trimmed.dropFirst("phantom ".count)).trimmingCharacters(in: .whitespaces)
            do {
                await firmware.setScene(try StandardPhantoms.scene(named: name))
                return "ok"
            } catch {
                return "error: \(error)"
            }
        case let t where t.hasPrefix("speed "):
            // Test speed only: a fault test runs the unit at real time while the host is dead.
            guard let v = Double(t.dropFirst("speed ".count).trimmingCharacters(in: .whitespaces)), v.isFinite, v >= 0.01, v <= 10_000 else {
                return "error: speed: expected a factor from 0.01 to 10000"
            }
            return await firmware.setSpeed(v) ? "ok" : "error: this unit's clock cannot change speed"
        case "status":
            let snap = await firmware.snapshot
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            guard let data = try? encoder.encode(snap) else { return "error: cannot encode status" }
            return String(decoding: data, as: UTF8.self)
        default:
            do {
                let fault = try FaultCommand.parse(trimmed)
                await firmware.inject(fault)
                return "ok"
            } catch {
                return "error: \(error.description)"
            }
        }
    }
}

import DXControl
import DXDaemon
import Foundation
import Logging

/// What a test needs of a running daemon, whether it runs in the test's own process
/// (`InProcessDaemon`: fast, debuggable, no build products needed) or as the real `dexad`
/// process (`DaemonProcess`: signals, crashes, systemd). A test written against this runs
/// against either in one line.
public protocol DaemonHarness: Sendable {
    var socketPath: String { get }
    var stateDirectory: String { get }
}

extension DaemonHarness {
    public func call(_ method: String, _ params: JSONValue? = nil) async throws -> JSONValue {
        try await ControlConnection.with(socketPath: socketPath) { try await $0.call(method, params) }
    }

    /// A typed call: `try await daemon.call(.examGet, ExamIDParams(examID: 1))` is an `ExamRecord`.
    public func call<P, R>(_ rpc: RPC<P, R>, _ params: P) async throws -> R {
        try await ControlConnection.with(socketPath: socketPath) { try await $0.call(rpc, params) }
    }

    public func call<R>(_ rpc: RPC<NoParams, R>) async throws -> R { try await call(rpc, NoParams()) }

    /// Waits until the daemon has connected to its device and the device is IDLE.
    public func waitForDevice(seconds: Double = 10) async throws {
        try await eventually("dexad connected to an IDLE device", seconds: seconds) {
            (try? await self.call(.deviceStatus))?.state == "IDLE"
        }
    }
}

extension DaemonProcess: DaemonHarness {}

/// The daemon's services (device, embedded simulator, control socket) running in this
/// process, configured as `DaemonProcess` configures `dexad`. `stop()` ends it the way
/// SIGTERM would (X-rays off first).
public final class InProcessDaemon: DaemonHarness {
    public let socketPath: String
    public let stateDirectory: String
    private let task: Task<Void, any Error>

    public init(in dir: TemporaryDirectory, timeScale: Double = 1, config extra: [String] = []) async throws {
        socketPath = dir.file("control.sock")
        stateDirectory = dir.file("state")
        var c = DaemonConfiguration()
        let lines = ["socket = \(socketPath)", "device = simulator", "state_directory = \(stateDirectory)", "time_scale = \(timeScale)",
                     "audit_log = \(dir.file("audit.log"))", "socket_group = none", "simulator_orderings = \(TestOrderings.next())"]
            + (timeScale > 1 ? ["simulator_watchdog_floor_ms = \(TestOrderings.watchdogFloorMs)"] : []) + extra
        for line in lines {
            let parts = line.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2 else { continue }
            try c.set(parts[0], parts[1])
        }
        var logger = Logger(label: "dexad.in-process")
        logger.logLevel = .warning
        let daemon = Daemon(configuration: c, logger: logger)
        task = Task { try await daemon.run() }
        let socket = socketPath, task = self.task
        try await eventually("the in-process daemon's control socket") { FileManager.default.fileExists(atPath: socket) || task.isCancelled }
    }

    /// Stops the daemon's services and waits for them.
    public func stop() async {
        task.cancel()
        _ = try? await task.value
    }

    deinit { task.cancel() }
}

import DXControl
import DXTransport
import Foundation
import Synchronization

/// Where the package's built executables are: beside the test bundle.
public enum BuiltProducts {
    public static var directory: URL {
        if let env = ProcessInfo.processInfo.environment["DEXA_BIN_DIR"] { return URL(fileURLWithPath: env) }
        let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        var dir = exe.deletingLastPathComponent()
        // swift-testing on Linux runs the .xctest binary itself; it sits in the products folder.
        while !FileManager.default.fileExists(atPath: dir.appendingPathComponent("dexad").path) && dir.path != "/" {
            dir = dir.deletingLastPathComponent()
        }
        return dir
    }

    public static func path(_ name: String) -> String { directory.appendingPathComponent(name).path }
}

/// A short-lived folder under /tmp (Unix socket paths must stay under 108 bytes).
public final class TemporaryDirectory: Sendable {
    public let path: String

    public init(_ prefix: String = "dxt") {
        let template = "/tmp/\(prefix)-XXXXXX"
        var bytes = Array(template.utf8CString)
        let made = bytes.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        path = made.map { String(cString: $0) } ?? "/tmp/\(prefix)-\(UUID().uuidString.prefix(8))"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    public func file(_ name: String) -> String { path + "/" + name }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// A child process of the test: started with arguments, its standard error kept in a file.
public final class ChildProcess: Sendable {
    public let process: Process
    public let logPath: String

    public init(executable: String, arguments: [String], logPath: String, environment: [String: String] = [:],
                standardInput: FileHandle? = nil) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = arguments
        if !environment.isEmpty {
            p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        p.standardError = log
        p.standardOutput = log
        p.standardInput = standardInput ?? FileHandle.nullDevice
        try p.run()
        self.process = p
        self.logPath = logPath
    }

    public var pid: Int32 { process.processIdentifier }
    public var isRunning: Bool { process.isRunning }

    public func signal(_ sig: Int32) { kill(process.processIdentifier, sig) }

    /// Waits for the process to end (up to `seconds`); returns its exit status, nil on time-out.
    public func waitForExit(seconds: Double = 10) async -> Int32? {
        let deadline = Date().addingTimeInterval(seconds)
        while process.isRunning && Date() < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        return process.isRunning ? nil : process.terminationStatus
    }

    public var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    public func stop() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }

    deinit { stop() }
}

public struct TestTimeout: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

/// Waits until `condition` holds, polling (tests only).
public func eventually(_ what: String, seconds: Double = 10, _ condition: () async -> Bool) async throws {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if await condition() { return }
        try await Task.sleep(for: .milliseconds(20))
    }
    throw TestTimeout("timed out waiting for \(what)")
}

/// A `dexa-sim` process with its device and control sockets.
public final class SimulatorProcess: Sendable {
    public let child: ChildProcess
    public let devicePath: String
    public let controlPath: String

    public let orderings: UInt64

    /// `orderings`: which of the ICD's freedoms the unit uses (by default the next seed of
    /// `TestOrderings`, so the integration tests meet many orders). At test speed the
    /// watchdog gets its wall-clock floor (`TestOrderings.watchdogFloorMs`).
    public init(in dir: TemporaryDirectory, speed: Double = 1, orderings: UInt64 = TestOrderings.next(), extra: [String] = []) async throws {
        devicePath = dir.file("sim.sock")
        controlPath = dir.file("sim-control.sock")
        self.orderings = orderings
        var arguments = ["--socket", devicePath, "--control", controlPath, "--speed", String(speed), "--orderings", String(orderings)]
        if speed > 1 { arguments += ["--watchdog-floor-ms", String(TestOrderings.watchdogFloorMs)] }
        child = try ChildProcess(executable: BuiltProducts.path("dexa-sim"), arguments: arguments + extra, logPath: dir.file("sim.log"))
        try await eventually("dexa-sim control socket") { FileManager.default.fileExists(atPath: controlPath) }
    }

    /// Sends one control line and returns the reply line.
    public func control(_ line: String) async throws -> String {
        let path = controlPath
        return try await offPool { try SimulatorProcess.roundTrip(path, line) }
    }

    static func roundTrip(_ path: String, _ line: String) throws -> String {
        let s = try UnixSocket.connect(path: path)
        defer { s.close() }
        try s.writeAll(Array((line + "\n").utf8))
        var reply: [UInt8] = []
        while !reply.contains(0x0A) {
            let b = try s.read()
            if b.isEmpty { break }
            reply += b
        }
        return String(decoding: reply, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The simulator's own account of itself (`status`).
    public func status() async throws -> JSONValue {
        let text = try await control("status")
        return try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
    }
}

/// A `dexad` process on a control socket of its own.
public final class DaemonProcess: Sendable {
    public let child: ChildProcess
    public let socketPath: String
    public let stateDirectory: String

    public let auditLogPath: String

    /// Starts `dexad`. `config` lines are added to its config file; `environment` to its
    /// environment; `launcher` (e.g. a shell that hands it an inherited socket) runs it.
    public init(in dir: TemporaryDirectory, device: String, timeScale: Double = 1, extra: [String] = [], config extraConfig: [String] = [],
                environment: [String: String] = [:], waitForSocket: String? = nil) async throws {
        socketPath = dir.file("control.sock")
        stateDirectory = dir.file("state")
        auditLogPath = dir.file("audit.log")
        let config = dir.file("dexad.conf")
        var lines = ["# test daemon", "audit_log = \(auditLogPath)", "socket_group = none"]
        if device == "simulator" {
            // The embedded simulator meets the same orders and floor as a dexa-sim process.
            if !extraConfig.contains(where: { $0.hasPrefix("simulator_orderings") }) { lines.append("simulator_orderings = \(TestOrderings.next())") }
            if timeScale > 1 { lines.append("simulator_watchdog_floor_ms = \(TestOrderings.watchdogFloorMs)") }
        }
        let text = (lines + extraConfig).joined(separator: "\n") + "\n"
        FileManager.default.createFile(atPath: config, contents: Data(text.utf8))
        child = try ChildProcess(
            executable: BuiltProducts.path("dexad"),
            arguments: ["--config", config, "--socket", socketPath, "--device", device, "--state-directory", stateDirectory,
                        "--time-scale", String(timeScale), "--log-level", "debug"] + extra,
            logPath: dir.file("dexad.log"), environment: environment)
        let child = self.child
        let socket = waitForSocket ?? socketPath
        try await eventually("dexad control socket") { FileManager.default.fileExists(atPath: socket) || !child.isRunning }
        guard child.isRunning else { throw TestTimeout("dexad exited: \(child.log)") }
    }

    /// The audit log's entries.
    public var auditEntries: [JSONValue] {
        let text = (try? String(contentsOfFile: auditLogPath, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { try? JSONDecoder().decode(JSONValue.self, from: Data($0.utf8)) }
    }

    /// Runs the `dexa` CLI against this daemon; returns (exit status, stdout, stderr).
    public func cli(_ arguments: [String]) async throws -> (status: Int32, out: String, err: String) {
        try await runCLI(arguments + ["--socket", socketPath])
    }
}

/// Runs `dexa` with arguments, optionally as another user (`setpriv`, root only); returns
/// (exit status, stdout, stderr).
public func runCLI(_ arguments: [String], asUser user: String? = nil, in directory: String? = nil) async throws -> (status: Int32, out: String, err: String) {
    let p = Process()
    if let user {
        p.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        guard let pw = getpwnam(user) else { throw TestTimeout("no such user \(user)") }
        p.arguments = ["--reuid=\(pw.pointee.pw_uid)", "--regid=\(pw.pointee.pw_gid)", "--init-groups", "--reset-env",
                       BuiltProducts.path("dexa")] + arguments
    } else {
        p.executableURL = URL(fileURLWithPath: BuiltProducts.path("dexa"))
        p.arguments = arguments
    }
    if let directory { p.currentDirectoryURL = URL(fileURLWithPath: directory) }
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    p.standardInput = FileHandle.nullDevice
    try p.run()
    // Blocking reads get threads of their own: on the cooperative pool (2 threads on a
    // 2-core machine) they would stall every task in the test process until dexa exits.
    async let o = readToEnd(out.fileHandleForReading)
    async let e = readToEnd(err.fileHandleForReading)
    let (od, ed) = await (o, e)
    while p.isRunning { try await Task.sleep(for: .milliseconds(10)) }
    return (p.terminationStatus, String(decoding: od, as: UTF8.self), String(decoding: ed, as: UTF8.self))
}

/// Reads a file handle to its end on a dedicated thread.
func readToEnd(_ handle: FileHandle) async -> Data {
    await withCheckedContinuation { c in
        let t = Thread { c.resume(returning: handle.readDataToEndOfFile()) }
        t.name = "dexa-test-pipe"
        t.start()
    }
}

/// `offPool` for work that cannot fail.
public func offPool<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { c in
        let t = Thread { c.resume(returning: body()) }
        t.start()
    }
}

/// Runs blocking work (socket round trips) on a dedicated thread.
public func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { c in
        let t = Thread { c.resume(with: Result { try body() }) }
        t.start()
    }
}

/// The orderings the integration tests' simulators use: seeds counted up from
/// `DEXA_ORDERINGS_SEED` (default 1), one per simulator started, so a run meets many mixes of
/// the ICD's freedoms and any failure names its seed (in the simulator's log and
/// `dexad.log`) to be run again.
public enum TestOrderings {
    private static let counter = Mutex<UInt64>(0)

    public static func next() -> UInt64 {
        let base = ProcessInfo.processInfo.environment["DEXA_ORDERINGS_SEED"].flatMap { UInt64($0) } ?? 1
        return counter.withLock { n in
            defer { n += 1 }
            return base &+ n
        }
    }

    /// At N× test speed the device watchdog's 1000 ms is 1000/N ms of wall time; a loaded
    /// 2-core machine holds a process back by up to ~40 ms (docs/ARCHITECTURE.md). The
    /// simulator's watchdog then also waits 500 ms of real time: ≥ 10× that jitter.
    public static let watchdogFloorMs = 500
}

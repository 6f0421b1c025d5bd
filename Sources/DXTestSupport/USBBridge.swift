import DXControl
import DXTransport
import Foundation

/// `dexad --device usb` running under umockdev, its USB bus served by
/// `Tests/umockdev/dx1_usb_bridge.py`, which forwards the three endpoints to a `dexa-sim`.
/// The daemon's real libusb and libudev code runs unchanged (USB-TESTING.md).
public final class USBBridgeProcess: Sendable {
    public let bridge: ChildProcess
    public let controlPath: String
    public let socketPath: String
    public let dumpDirectory: String
    public let stateDirectory: String

    /// Whether this machine can run the emulation (umockdev, its GI bindings, libusb).
    /// True when umockdev is installed, and always under CI (`CI=true`): there a missing
    /// umockdev must fail the USB tests, not skip them (scripts/setup installs it).
    public static var available: Bool {
        ProcessInfo.processInfo.environment["CI"] == "true"
            || (FileManager.default.isExecutableFile(atPath: "/usr/bin/umockdev-wrapper")
                && FileManager.default.fileExists(atPath: "/usr/lib/x86_64-linux-gnu/girepository-1.0/UMockdev-1.0.typelib"))
    }

    public static var script: String {
        // Tests/umockdev beside the package: walk up from the products folder.
        var dir = BuiltProducts.directory
        while dir.path != "/" {
            let candidate = dir.appendingPathComponent("Tests/umockdev/dx1_usb_bridge.py")
            if FileManager.default.fileExists(atPath: candidate.path) { return candidate.path }
            dir = dir.deletingLastPathComponent()
        }
        return "Tests/umockdev/dx1_usb_bridge.py"
    }

    /// Runs `command` (default: dexad on this bridge's sockets) under the emulated bus.
    public init(in dir: TemporaryDirectory, simulator: SimulatorProcess, timeScale: Double, plugged: Bool = true,
                command: [String]? = nil, waitForSocket: Bool = true) async throws {
        controlPath = dir.file("usb-bridge.sock")
        socketPath = dir.file("control.sock")
        dumpDirectory = dir.file("dump")
        stateDirectory = dir.file("state")
        try FileManager.default.createDirectory(atPath: dumpDirectory, withIntermediateDirectories: true)
        let config = dir.file("dexad.conf")
        FileManager.default.createFile(atPath: config, contents: Data("audit_log = \(dir.file("audit.log"))\nsocket_group = none\n".utf8))
        // The bridge itself runs under umockdev too: its test bed's uevents go through the
        // preloaded libudev.
        var args = ["/usr/bin/python3", Self.script, "--sim", simulator.devicePath, "--control", controlPath, "--dump", dumpDirectory]
        if !plugged { args.append("--unplugged") }
        args += ["--"] + (command ?? [BuiltProducts.path("dexad"), "--device", "usb", "--config", config, "--socket", socketPath,
                                      "--state-directory", stateDirectory, "--time-scale", String(timeScale), "--log-level", "debug"])
        bridge = try ChildProcess(executable: "/usr/bin/umockdev-wrapper", arguments: args, logPath: dir.file("usb-bridge.log"))
        guard waitForSocket else { return }
        let path = socketPath, bridge = self.bridge
        try await eventually("dexad under umockdev") { FileManager.default.fileExists(atPath: path) || !bridge.isRunning }
        guard bridge.isRunning else { throw TestTimeout("the USB bridge exited: \(bridge.log.suffix(2000))") }
    }

    /// One command to the bridge (plug, unplug, stall EP, timeout EP, short EP N, status).
    public func control(_ line: String) async throws -> String {
        let path = controlPath
        return try await offPool { try SimulatorProcess.roundTrip(path, line) }
    }

    public func status() async throws -> JSONValue {
        try JSONDecoder().decode(JSONValue.self, from: Data(try await control("status").utf8))
    }

    public func call(_ method: String, _ params: JSONValue? = nil) async throws -> JSONValue {
        try await ControlConnection.with(socketPath: socketPath) { try await $0.call(method, params) }
    }

    public func waitForIdleDevice(seconds: Double = 10) async throws {
        try await eventually("the USB device connected and IDLE", seconds: seconds) {
            (try? await self.call("device.status"))?["state"]?.stringValue == "IDLE"
        }
    }

    public var log: String { bridge.log }

    /// The pid of the dexad serving `socketPath` (found through /proc).
    public var daemonPID: Int32? {
        let procs = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        for p in procs {
            guard let pid = Int32(p), let cmd = FileManager.default.contents(atPath: "/proc/\(p)/cmdline") else { continue }
            let args = cmd.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            if args.first?.hasSuffix("/dexad") == true && args.contains(socketPath) { return pid }
        }
        return nil
    }

    /// CPU seconds (user + system) a process has used so far.
    public static func cpuSeconds(of pid: Int32) -> Double? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let u = Double(fields[11]), let s = Double(fields[12]) else { return nil }
        return (u + s) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    public func stop() {
        bridge.signal(SIGTERM)
    }

    deinit { bridge.signal(SIGTERM) }
}

import ArgumentParser
import DXDaemon
import Foundation
import Logging

/// `dexad`: the DX-1 daemon. Wiring only; everything it does lives in DXDaemon.
@main
struct Dexad: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dexad",
        abstract: "The DX-1 densitometer daemon: drives the scanner and serves the control socket.")

    @Option(name: .long, help: "Config file (key = value lines; see docs/configuration.md).")
    var config: String?

    @Option(name: .long, help: "Control socket path (default /run/dexa/control.sock).")
    var socket: String?

    @Option(name: .long, help: "The DX-1 to drive: 'simulator' (embedded) or sim:PATH (a dexa-sim device socket).")
    var device: String?

    @Flag(name: .long, help: "Use the embedded simulator (same as --device simulator).")
    var simulator = false

    @Option(name: .long, help: "State directory: captures and, later, the exam store (default /var/lib/dexa).")
    var stateDirectory: String?

    @Option(name: .long, help: "Run time this many times faster (simulator only).")
    var timeScale: Double?

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error.")
    var logLevel: String?

    @Flag(name: .long, help: "Do not record captures of scans.")
    var noCaptures = false

    func run() async throws {
        // Before anything else allocates on another thread (docs/RELIABILITY.md, "A clinic day").
        let arenasLimited = Heap.configure()
        var c = DaemonConfiguration()
        do {
            let path = config ?? "/etc/dexa/dexad.conf"
            if config != nil || FileManager.default.fileExists(atPath: path) { try c.apply(file: path) }
            if let socket { try c.set("socket", socket) }
            if simulator { try c.set("device", "simulator") }
            if let device { try c.set("device", device) }
            if let stateDirectory { try c.set("state_directory", stateDirectory) }
            if let timeScale { try c.set("time_scale", String(timeScale)) }
            if let logLevel { try c.set("log_level", logLevel) }
            if noCaptures { c.recordCaptures = false }
        } catch {
            FileHandle.standardError.write(Data("dexad: \(error)\n".utf8))
            throw ExitCode(2)
        }
        let level = Logger.Level(rawValue: c.logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return MultiplexLogHandler([h, LogRing.shared.handler(label: label, level: level)])
        }
        let logger = Logger(label: "dexad")
        logger.notice("dexad starting", metadata: ["device": "\(c.device)", "socket": "\(c.socketPath)"])
        if !arenasLimited { logger.warning("glibc did not take the limit of two malloc arenas: memory may grow with free pages over a day") }
        do {
            try await Daemon(configuration: c, logger: logger).run()
        } catch let e as ConfigurationError {
            // A setting that only shows itself wrong when used (a damaged exam database, an
            // exam protocol that does not parse): the same one line and status as a bad file.
            FileHandle.standardError.write(Data("dexad: \(e)\n".utf8))
            throw ExitCode(2)
        }
    }
}



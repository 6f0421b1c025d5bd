import ArgumentParser
import DXConsole
import DXSpawn
import Foundation
import Logging

/// `dexa-console`: the technologist's console, a web page on this machine (127.0.0.1 only) that
/// runs the day through dexad as the user who started it. Its own process and unit
/// (dexa-console.service, a user unit): the process that turns X-rays on serves no network.
@main
struct DexaConsole: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dexa-console",
        abstract: "Serve the technologist's console on 127.0.0.1 and print its URL (with this session's token).")

    @Option(help: "dexad's control socket.") var socket = ProcessInfo.processInfo.environment["DEXA_SOCKET"] ?? "/run/dexa/control.sock"
    @Option(help: "The port on 127.0.0.1 (0: any free port).") var port = 8642
    @Option(help: "The DICOM settings whose worklist peer lists today's scheduled patients (as dexa worklist).")
    var dicomConfig = ProcessInfo.processInfo.environment["DEXA_DICOM_CONFIG"] ?? "/etc/dexa/dicom.conf"
    @Option(help: "The QC phantom's ICD §8 file (its ROIs), readable by dexad: with it the page runs the daily QC scan (qc.run), as dexa qc run --phantom does.")
    var qcPhantom: String?
    @Option(help: "Also write the URL to this file (mode 0600), for the desktop entry to open.") var urlFile: String?
    @Option(help: "debug, info, notice, warning or error.") var logLevel: String = "info"
    @Flag(help: "Start this user's console unit if it is not running and open its URL in the browser (the desktop entry).") var open = false

    func run() async throws {
        if open { try await Self.openRunning() }
        var logger = Logger(label: "dexa-console")
        guard let level = Logger.Level(rawValue: logLevel) else {
            FileHandle.standardError.write(Data("dexa-console: --log-level must be one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))\n".utf8))
            throw ExitCode(64)  // EX_USAGE
        }
        logger.logLevel = level
        guard (0...65535).contains(port) else {
            FileHandle.standardError.write(Data("dexa-console: --port must be 0 to 65535\n".utf8))
            throw ExitCode(64)
        }
        let server = ConsoleServer(socketPath: socket, dicomConfigPath: dicomConfig, qcPhantomPath: qcPhantom, logger: logger)
        let urlFile = self.urlFile
        try await server.run(port: port) { bound in
            let url = "http://127.0.0.1:\(bound)/?token=\(server.token)"
            if let urlFile {
                // The token only in the file (mode 0600): standard output goes to the journal,
                // which others (adm, systemd-journal) may read.
                _ = FileManager.default.createFile(atPath: urlFile, contents: Data((url + "\n").utf8), attributes: [.posixPermissions: 0o600])
                FileHandle.standardOutput.write(Data("dexa-console: serving http://127.0.0.1:\(bound)/; the URL with this session's token is in \(urlFile)\n".utf8))
            } else {
                FileHandle.standardOutput.write(Data("dexa-console: open \(url)\n".utf8))
            }
        }
    }

    /// `--open`: `systemctl --user start dexa-console.service`, then the URL it wrote to the
    /// user's runtime directory, once the console there answers to it, opened with `xdg-open`
    /// (both found on the PATH, as the desktop's own launcher finds them). A URL the console
    /// does not answer to (a file left by the unit's run before a restart: its token is old) is
    /// waited past, for up to 10 s on the clock.
    static func openRunning() async throws -> Never {
        /// A program found on the PATH, run to its end on a thread of its own (`Spawn`: no
        /// signal blocked, no descriptor of ours passed on).
        func runFromPath(_ program: String, _ arguments: [String]) async throws -> Int32 {
            do {
                return try await onThreadOfItsOwn { try Spawn.run(program, arguments, searchingPath: true) }
            } catch {
                FileHandle.standardError.write(Data("dexa-console --open: \(error)\n".utf8))
                throw ExitCode(69)
            }
        }
        guard let runtime = ProcessInfo.processInfo.environment["XDG_RUNTIME_DIR"] else {
            FileHandle.standardError.write(Data("dexa-console --open: no XDG_RUNTIME_DIR (not in a login session)\n".utf8))
            throw ExitCode(69)  // EX_UNAVAILABLE
        }
        let urlFile = runtime + "/dexa-console.url"
        let started = try await runFromPath("systemctl", ["--user", "start", "dexa-console.service"])
        guard started == 0 else {
            FileHandle.standardError.write(Data("dexa-console --open: systemctl --user start dexa-console.service failed (\(started))\n".utf8))
            throw ExitCode(69)
        }
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            if let url = try? String(contentsOfFile: urlFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines), url.hasPrefix("http://127.0.0.1:"),
               url.allSatisfy({ $0.isLetter || $0.isNumber || ":/?=.".contains($0) }), await ConsoleProbe.answers(url) {
                // The browser is given a file of this user's (mode 0600) that sends it on to
                // the URL: a command line is readable by every user (/proc/PID/cmdline), and the
                // browser's keeps its arguments for as long as it runs.
                let page = runtime + "/dexa-console-open.html"
                let html = "<!doctype html><meta http-equiv=\"refresh\" content=\"0; url=\(url)\"><title>DX-1 console</title>"
                try? FileManager.default.removeItem(atPath: page)
                guard FileManager.default.createFile(atPath: page, contents: Data(html.utf8), attributes: [.posixPermissions: 0o600]) else {
                    FileHandle.standardError.write(Data("dexa-console --open: cannot write \(page)\n".utf8))
                    throw ExitCode(73)  // EX_CANTCREAT
                }
                throw ExitCode(try await runFromPath("xdg-open", [page]))
            }
            try await Task.sleep(for: .milliseconds(250))
        }
        FileHandle.standardError.write(Data("dexa-console --open: the console did not start, or does not answer to the URL in \(urlFile) (journalctl --user -u dexa-console)\n".utf8))
        throw ExitCode(69)
    }
}

import ArgumentParser
import DXControl
import Foundation

/// `--json`, the same for every command: human text by default; with `--json`, one JSON
/// document on standard output (one per line, each tagged, where a command follows progress).
public struct OutputOptions: ParsableArguments {
    @Flag(name: .long, help: "JSON for scripts: one document on standard output (one tagged object per line for commands that follow progress).")
    public var json = false
    public init() {}
}

/// Options every `dexa` command that talks to the daemon takes.
public struct ConnectionOptions: ParsableArguments {
    @Option(name: .long, help: "dexad's control socket.")
    public var socket: String = ProcessInfo.processInfo.environment["DEXA_SOCKET"] ?? "/run/dexa/control.sock"

    @OptionGroup public var output: OutputOptions

    public init() {}

    public var json: Bool { output.json }

    /// Calls one method with its typed parameters; every failure becomes one line and its
    /// exit status.
    func call<P, R>(_ rpc: RPC<P, R>, _ params: P) async throws -> R {
        try await run { try await $0.call(rpc, params) }
    }

    func call<R>(_ rpc: RPC<NoParams, R>) async throws -> R { try await call(rpc, NoParams()) }

    func run<R: Sendable>(_ body: @escaping @Sendable (ControlConnection) async throws -> R) async throws -> R {
        do {
            return try await ControlConnection.with(socketPath: socket, body)
        } catch let e as RPCError {
            throw CLIError(e)
        } catch let e as ControlClientError {
            throw CLIError(e)
        }
    }

    /// Waits until the daemon answers and the DX-1 is connected and out of BOOT (a daemon
    /// that has just started, a unit coming back from RESET), at most `timeout`; then says
    /// why not, with the status of the last cause (69 no daemon, 75 no ready device). A
    /// daemon that is not there at all is given 5 s (it may be starting), not the whole wait.
    func waitForDevice(timeout: Duration = .seconds(30)) async throws {
        let start = ContinuousClock.now, deadline = start + timeout
        var last = CLIError(message: "no answer", status: .unreachable)
        while ContinuousClock.now < deadline {
            do {
                let status = try await call(.deviceStatus)
                if status.state != "BOOT" { return }
                last = CLIError(message: "the DX-1 is still starting (BOOT)", status: .deviceUnavailable)
            } catch let e as CLIError where e.status == .deviceUnavailable {
                last = e
            } catch let e as CLIError where e.status == .unreachable && ContinuousClock.now - start < .seconds(5) {
                last = e
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw CLIError(message: "not ready within \(timeout): \(last.message)", status: last.status)
    }
}

/// A failure reported as one line on standard error, with its exit status (`ExitStatus`).
struct CLIError: Error, CustomStringConvertible {
    var message: String
    var data: JSONValue?
    var status: ExitStatus

    init(status: ExitStatus, message: String) { self.init(message: message, status: status) }

    init(message: String, data: JSONValue? = nil, status: ExitStatus = .failure) {
        self.message = message; self.data = data; self.status = status
    }
    init(_ e: RPCError) { self.init(message: e.message, data: e.data, status: ExitStatus.forCode(e.code)) }
    init(_ e: ControlClientError) {
        switch e {
        case .unreachable(_, let reason) where reason == "permission denied": self.init(message: e.description, status: .permissionDenied)
        case .unreachable: self.init(message: e.description, status: .unreachable)
        case .connectionClosed, .badReply: self.init(message: e.description, status: .failure)
        }
    }
    var description: String { message }
}

enum Output {
    static func json(_ v: some Encodable) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        if let d = try? encoder.encode(v) { print(String(decoding: d, as: UTF8.self)) }
    }

    static func json(_ v: JSONValue) { json(Wrapped(v)) }
    private struct Wrapped: Encodable {
        let value: JSONValue
        init(_ v: JSONValue) { value = v }
        func encode(to encoder: any Encoder) throws { try value.encode(to: encoder) }
    }

    /// One line of a stream: `{"type": TAG, "data": VALUE}`.
    static func tagged(_ type: String, _ v: some Encodable & Sendable) {
        json(Tagged(type: type, data: v))
    }

    private struct Tagged<T: Encodable>: Encodable { var type: String; var data: T }

    static func error(_ message: String) {
        FileHandle.standardError.write(Data("dexa: \(message)\n".utf8))
    }

    static func strings(_ v: JSONValue?) -> [String] {
        guard case .array(let a)? = v else { return [] }
        return a.compactMap(\.stringValue)
    }

    static func flush() { fflush(nil) }

    /// An angle to a tenth of a degree.
    static func degrees(_ d: Double) -> String { d == d.rounded() ? String(Int(d)) : String(format: "%.1f", d) }

    /// Nested objects' fields as `outer.inner` keys, for a flat table.
    static func flattened(_ v: JSONValue, prefix: String = "") -> JSONValue {
        guard case .object(let o) = v else { return v }
        var flat: [String: JSONValue] = [:]
        for (k, value) in o {
            if case .object = value, case .object(let inner) = flattened(value, prefix: prefix + k + ".") {
                flat.merge(inner) { a, _ in a }
            } else {
                flat[prefix + k] = value
            }
        }
        return .object(flat)
    }

    static var stderrIsTerminal: Bool { isatty(2) == 1 }
    static var stdoutIsTerminal: Bool { isatty(1) == 1 }

    static func number(_ v: JSONValue?) -> String {
        guard let n = v?.numberValue else { return v?.stringValue ?? "-" }
        return n == n.rounded() && abs(n) < 1e15 ? String(Int(n)) : String(format: "%.3g", n)
    }

    /// Prints an object's fields as aligned `key  value` lines.
    static func table(_ v: JSONValue, keys: [String]? = nil) {
        guard case .object(let o) = v else { print(v); return }
        let names = keys ?? o.keys.sorted()
        let width = names.map(\.count).max() ?? 0
        for k in names {
            guard let value = o[k] else { continue }
            let text: String
            switch value {
            case .string(let s): text = s
            case .number: text = number(value)
            case .bool(let b): text = b ? "yes" : "no"
            case .array(let a): text = a.map { $0.stringValue ?? $0.description }.joined(separator: ", ")
            case .null: text = "-"
            case .object: text = value.description
            }
            print(k.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + text)
        }
    }
}

/// A progress bar on standard error, redrawn in place, only when it is a terminal.
struct ProgressBar {
    let enabled = Output.stderrIsTerminal
    /// What is counted, plural ("lines", "captures").
    var unit = "lines"

    func draw(done: Int, total: Int, rate: Double, eta: Double) {
        guard enabled, total > 0 else { return }
        let width = 30
        let filled = min(width, done * width / total)
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        let etaText = eta > 0 ? String(format: "%d:%02d", Int(eta) / 60, Int(eta) % 60) : "-:--"
        let line = String(format: "\r[%@] %d/%d %@  %.1f %@/s  ETA %@ ", bar, done, total, unit, rate, unit, etaText)
        FileHandle.standardError.write(Data(line.utf8))
    }

    func finish() {
        guard enabled else { return }
        FileHandle.standardError.write(Data("\n".utf8))
    }
}

import ArgumentParser
import DXControl
import Foundation

/// Options every `dexa` command that talks to the daemon takes.
public struct ConnectionOptions: ParsableArguments {
    @Option(name: .long, help: "dexad's control socket.")
    public var socket: String = ProcessInfo.processInfo.environment["DEXA_SOCKET"] ?? "/run/dexa/control.sock"

    @Flag(name: .long, help: "Print JSON for scripts instead of text.")
    public var json = false

    public init() {}

    /// Calls one method and returns its result, turning every failure into a one-line error.
    func call(_ method: ControlMethod, _ params: JSONValue? = nil) async throws -> JSONValue {
        try await run { try await $0.call(method.rawValue, params) }
    }

    func run<R: Sendable>(_ body: @escaping @Sendable (ControlConnection) async throws -> R) async throws -> R {
        do {
            return try await ControlConnection.with(socketPath: socket, body)
        } catch let e as RPCError {
            throw CLIError(message: e.message, data: e.data)
        } catch let e as ControlClientError {
            throw CLIError(message: e.description)
        }
    }
}

/// A failure reported as one line on standard error, exit status 1.
struct CLIError: Error, CustomStringConvertible {
    var message: String
    var data: JSONValue?
    var description: String { message }
}

enum Output {
    static func json(_ v: JSONValue) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        if let d = try? encoder.encode(v) { print(String(decoding: d, as: UTF8.self)) }
    }

    static func error(_ message: String) {
        FileHandle.standardError.write(Data("dexa: \(message)\n".utf8))
    }

    static func strings(_ v: JSONValue?) -> [String] {
        guard case .array(let a)? = v else { return [] }
        return a.compactMap(\.stringValue)
    }

    static func flush() { fflush(nil) }

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

    func draw(done: Int, total: Int, rate: Double, eta: Double) {
        guard enabled, total > 0 else { return }
        let width = 30
        let filled = min(width, done * width / total)
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        let etaText = eta > 0 ? String(format: "%d:%02d", Int(eta) / 60, Int(eta) % 60) : "-:--"
        let line = String(format: "\r[%@] %d/%d lines  %.1f lines/s  ETA %@ ", bar, done, total, rate, etaText)
        FileHandle.standardError.write(Data(line.utf8))
    }

    func finish() {
        guard enabled else { return }
        FileHandle.standardError.write(Data("\n".utf8))
    }
}

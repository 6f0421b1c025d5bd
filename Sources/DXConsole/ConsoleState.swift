import DXControl
import Foundation

/// What the page shows, read from dexad each time it is asked: the daemon's connection, the
/// device's state, today's exams and the QC status. Nothing is remembered here, so the page
/// can never show a scan that has ended as running. A part dexad did not answer in time, or
/// answered with an error, is `{"error": ...}`: the page shows it as unknown, never as "off"
/// (a device.status that failed while the unit exposed would otherwise read as X-rays off).
enum ConsoleState {
    /// How long a part of the state may take before it is unknown.
    static let timeout: Duration = .seconds(3)

    static func read(link: DaemonLink) async -> [String: JSONValue] {
        var state: [String: JSONValue] = ["daemon": .object(["connected": .bool(await link.isConnected),
                                                             "generation": .number(Double(await link.generation))])]
        guard await link.isConnected else { return state }
        async let device = part { try await link.call("device.status", nil) }
        async let exams = part { try await link.call("exam.list", .object(["limit": .number(100)])) }
        async let qc = part { try await link.call("qc.status", .object([:])) }
        let (d, e, q) = await (device, exams, qc)
        state["device"] = d
        state["exams"] = e["exams"] ?? e
        state["qc"] = q
        return state
    }

    /// One call, or `{"error": why}` when it failed or took longer than `timeout`.
    static func part(_ call: @escaping @Sendable () async throws -> JSONValue) async -> JSONValue {
        do { return try await withTimeout(timeout, call) } catch {
            return .object(["error": .string("\(error)")])
        }
    }
}

struct TimedOut: Error, CustomStringConvertible {
    var description: String { "dexad did not answer in time" }
}

/// `body`, or `TimedOut` after `limit` (the body is cancelled).
func withTimeout<T: Sendable>(_ limit: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask { try await body() }
        group.addTask { try await Task.sleep(for: limit); throw TimedOut() }
        defer { group.cancelAll() }
        guard let first = try await group.next() else { throw TimedOut() }
        return first
    }
}

/// The Stop button: X-rays off now, over a connection of its own (the standing one may be
/// busy or gone). First `scan.abort`, always (it touches no database and stops whatever scan
/// runs, an exam's or a service scan's); then `exam.abort` of every exam in progress among the
/// newest ("Stop pressed on the console"), so that none goes on to its next scan; then
/// `device.status`, and "X-rays off" is said only if the unit says so.
enum Stop {
    struct Outcome {
        var ok: Bool
        var json: [String: JSONValue]
    }

    static let reason = "Stop pressed on the console"

    static func press(socketPath: String) async -> Outcome {
        do {
            return try await withTimeout(.seconds(5)) {
                try await ControlConnection.with(socketPath: socketPath) { c -> Outcome in
                    var errors: [JSONValue] = []
                    var scan: JSONValue = .null
                    do { scan = try await c.call("scan.abort") } catch { errors.append(.string("scan.abort: \(error)")) }
                    var aborted: [JSONValue] = []
                    do {
                        let list = try await c.call("exam.list", .object(["limit": .number(50)]))
                        let exams: [JSONValue] = if case .array(let a)? = list["exams"] { a } else { [] }
                        for exam in exams where exam["state"]?.stringValue == "in_progress" {
                            guard let id = exam["id"] else { continue }
                            do {
                                _ = try await c.call("exam.abort", .object(["exam_id": id, "reason": .string(reason), "cause": .string("other")]))
                                aborted.append(id)
                            } catch { errors.append(.string("exam.abort \(id): \(error)")) }
                        }
                    } catch { errors.append(.string("exam.list: \(error)")) }
                    // What the unit says now: off is claimed only when it says so.
                    var xrayOn: JSONValue = .null
                    for _ in 0..<10 {
                        if let s = try? await c.call("device.status"), case .bool(let on)? = s["xray_on"] {
                            xrayOn = .bool(on)
                            if !on { break }
                        }
                        try? await Task.sleep(for: .milliseconds(100))
                    }
                    let ok = xrayOn == .bool(false)
                    var json: [String: JSONValue] = ["aborted_exams": .array(aborted), "scan": scan, "errors": .array(errors), "xray_on": xrayOn]
                    if !ok {
                        json["error"] = .string(xrayOn == .bool(true)
                            ? "X-rays are still on after Stop: use the scanner's emergency stop"
                            : "the unit's state after Stop is unknown: use the scanner's emergency stop")
                    }
                    return Outcome(ok: ok, json: json)
                }
            }
        } catch {
            return Outcome(ok: false, json: ["error": .string("Stop could not reach dexad (\(error)): use the scanner's emergency stop")])
        }
    }
}

import DXControl
import Foundation

/// What the page shows, read from dexad each time it is asked: the daemon's connection, the
/// device's state, today's exams and the QC status. Nothing is remembered here, so the page
/// can never show a scan that has ended as running.
enum ConsoleState {
    static func read(link: DaemonLink) async -> [String: JSONValue] {
        var state: [String: JSONValue] = ["daemon": .object(["connected": .bool(await link.isConnected),
                                                             "generation": .number(Double(await link.generation))])]
        guard await link.isConnected else { return state }
        async let device = try? link.call("device.status", nil)
        async let exams = try? link.call("exam.list", .object(["limit": .number(100)]))
        async let qc = try? link.call("qc.status", .object([:]))
        state["device"] = await device ?? .null
        state["exams"] = await exams?["exams"] ?? .null
        state["qc"] = await qc ?? .null
        return state
    }
}

/// The Stop button: X-rays off now, over a connection of its own (the standing one may be
/// busy or gone). The running exam is aborted (`exam.abort`, which stops its scan at once and
/// records why); with no exam running, any scan is (`scan.abort`); if the exam's abort fails,
/// the scan's is tried.
enum Stop {
    struct Outcome {
        var ok: Bool
        var json: [String: JSONValue]
    }

    static let reason = "Stop pressed on the console"

    static func press(socketPath: String) async -> Outcome {
        do {
            return try await ControlConnection.with(socketPath: socketPath) { c -> Outcome in
                let list = try? await c.call("exam.list", .object(["limit": .number(50)]))
                let running = (list?["exams"].flatMap { exams -> [JSONValue]? in
                    if case .array(let a) = exams { return a }
                    return nil
                } ?? []).filter { $0["state"]?.stringValue == "in_progress" }
                var aborted: [JSONValue] = []
                var errors: [JSONValue] = []
                for exam in running {
                    guard let id = exam["id"] else { continue }
                    do {
                        _ = try await c.call("exam.abort", .object(["exam_id": id, "reason": .string(reason), "cause": .string("other")]))
                        aborted.append(id)
                    } catch { errors.append(.string("exam.abort: \(error)")) }
                }
                var scan: JSONValue = .null
                if aborted.isEmpty {
                    do { scan = try await c.call("scan.abort") } catch { errors.append(.string("scan.abort: \(error)")) }
                }
                let ok = !aborted.isEmpty || scan != .null
                return Outcome(ok: ok, json: ["aborted_exams": .array(aborted), "scan": scan, "errors": .array(errors)])
            }
        } catch {
            return Outcome(ok: false, json: ["error": .string("Stop could not reach dexad: \(error). Use the scanner's emergency stop.")])
        }
    }
}

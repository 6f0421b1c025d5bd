import DXAcquisition
import DXControl
import DXDevice
import DXProtocol
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// `exam.*` (docs/control-protocol.md, docs/exam.md): the technologist's exam through the
/// sequencer. Parameters are decoded strictly; a wrong type or an unknown exam changes
/// nothing and gets a JSON-RPC error naming the field.
struct ExamMethods {
    let exams: ExamSequencer

    struct CreateParams: Decodable {
        var patient: PatientRecord
        var referral: String
        var operatorName: String?
        enum CodingKeys: String, CodingKey { case patient, referral, operatorName = "operator" }
    }

    struct ChecklistParams: Decodable {
        var examID: Int64
        var answers: ChecklistAnswers
        enum CodingKeys: String, CodingKey { case answers, examID = "exam_id" }
    }

    struct ExamParams: Decodable {
        var examID: Int64
        enum CodingKeys: String, CodingKey { case examID = "exam_id" }
    }

    struct SiteParams: Decodable {
        var examID: Int64
        var site: Site?
        var reason: String?
        enum CodingKeys: String, CodingKey { case site, reason, examID = "exam_id" }
    }

    struct ListParams: Decodable {
        var limit: Int?
    }

    func handle(_ method: ControlMethod, _ params: JSONValue?, _ context: ControlContext) async throws -> JSONValue {
        do {
            switch method {
            case .examCreate:
                let p: CreateParams = try Self.decode(params)
                return try Self.json(try await exams.create(patient: p.patient, referral: p.referral, operatorName: p.operatorName ?? Self.user(context)))
            case .examChecklist:
                let p: ChecklistParams = try Self.decode(params)
                return try Self.json(try await exams.checklist(examID: p.examID, answers: p.answers, by: Self.user(context)))
            case .examStart:
                let p: ExamParams = try Self.decode(params)
                return try Self.json(try await exams.start(examID: p.examID, observer: Self.observer(context)))
            case .examNext:
                let p: ExamParams = try Self.decode(params)
                return try Self.json(try await exams.next(examID: p.examID, observer: Self.observer(context)))
            case .examRepeat:
                let p: SiteParams = try Self.decode(params)
                return try Self.json(try await exams.repeatSite(examID: p.examID, site: p.site, observer: Self.observer(context)))
            case .examSkip:
                let p: SiteParams = try Self.decode(params)
                guard let site = p.site else { throw RPCError.invalidParams("site is required") }
                return try Self.json(try await exams.skip(examID: p.examID, site: site, reason: p.reason ?? "", by: Self.user(context)))
            case .examAdd:
                let p: SiteParams = try Self.decode(params)
                guard let site = p.site else { throw RPCError.invalidParams("site is required") }
                return try Self.json(try await exams.add(examID: p.examID, site: site))
            case .examAbort:
                let p: SiteParams = try Self.decode(params)
                return try Self.json(try await exams.abort(examID: p.examID, reason: p.reason ?? "aborted by \(Self.user(context))"))
            case .examGet:
                let p: ExamParams = try Self.decode(params)
                return try Self.json(try await exams.get(p.examID))
            case .examList:
                let p: ListParams = try Self.decode(params ?? .object([:]))
                let limit = p.limit ?? 20
                guard (1...500).contains(limit) else { throw RPCError.invalidParams("limit must be 1 to 500") }
                return .array(try await exams.list(limit: limit).map { try Self.json($0) })
            default:
                throw RPCError.methodNotFound(method.rawValue)
            }
        } catch let e as ExamError {
            throw Self.rpcError(e)
        }
    }

    static func rpcError(_ e: ExamError) -> RPCError {
        switch e {
        case .unknownExam, .invalid, .notInPlan: RPCError(code: RPCError.invalidParamsCode, message: e.description)
        case .wrongState, .checklistIncomplete, .blocked, .anotherExamRunning: RPCError(code: RPCError.examStateCode, message: e.description)
        case .stepRunning: RPCError(code: RPCError.busyCode, message: e.description)
        case .notCalibrated: RPCError(code: RPCError.notCalibratedCode, message: e.description)
        case .storage: RPCError(code: RPCError.internalErrorCode, message: e.description)
        }
    }

    /// Strict decoding of an object of parameters: the message names what is wrong.
    static func decode<T: Decodable>(_ params: JSONValue?) throws -> T {
        guard let params, case .object = params else { throw RPCError.invalidParams("params must be an object") }
        return try DaemonControlHandler.params(params)
    }

    static func json(_ v: some Encodable) throws -> JSONValue { try JSONValue(encoding: v) }

    static func json(_ step: StepResult) throws -> JSONValue {
        .object(["exam": try JSONValue(encoding: step.exam), "attempt": try JSONValue(encoding: step.attempt), "message": .string(step.message)])
    }

    /// The caller's login name (the audit trail and the checklist record who answered).
    static func user(_ context: ControlContext) -> String {
        guard let uid = context.peer?.uid else { return "unknown" }
        if let pw = getpwuid(uid), let name = pw.pointee.pw_name { return String(cString: name) }
        return "uid \(uid)"
    }

    /// Notifications on the caller's connection: `exam.step`, `exam.warning`, `scan.progress`.
    static func observer(_ context: ControlContext) -> ExamSequencer.Observer {
        { notice in
            switch notice {
            case let .step(id, site, phase):
                context.notify("exam.step", .object(["exam_id": .number(Double(id)), "site": .string(site.rawValue), "phase": .string(phase)]))
            case let .progress(id, site, p):
                context.notify("scan.progress", .object([
                    "exam_id": .number(Double(id)), "site": .string(site.rawValue), "scan_id": .number(Double(p.scanID)),
                    "lines": .number(Double(p.lines)), "planned_lines": .number(Double(p.plannedLines)), "gaps": .number(Double(p.gaps)),
                    "lines_per_s": .number(p.linesPerSecond), "eta_s": .number(p.etaSeconds),
                ]))
            case let .warning(id, site, w):
                var fields: [String: JSONValue] = ["exam_id": .number(Double(id)), "kind": .string(w.kind.rawValue), "message": .string(w.message)]
                if let site { fields["site"] = .string(site.rawValue) }
                if let line = w.line { fields["line"] = .number(Double(line)) }
                if let v = w.value, v.isFinite { fields["value"] = .number(v) }
                context.notify("exam.warning", .object(fields))
            }
        }
    }
}

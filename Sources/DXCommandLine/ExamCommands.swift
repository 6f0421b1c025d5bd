import ArgumentParser
import DXControl
import Foundation

/// `dexa exam`: what the technologist does all day (docs/exam.md).
struct ExamCommands: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "exam", abstract: "Patient exams: new, checklist, run, status, list, show (and skip, add, abort).",
        subcommands: [New.self, Checklist.self, Run.self, Status.self, List.self, Show.self, Skip.self, Add.self, AbortExam.self])

    struct New: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Register a patient's exam; prints its number.")
        @OptionGroup var options: ConnectionOptions
        @Option(name: .customLong("patient-id"), help: "The hospital's patient id.") var patientID: String
        @Option(help: "The patient's name.") var name: String
        @Option(help: "female or male") var sex: String
        @Option(name: .customLong("birth-date"), help: "YYYY-MM-DD") var birthDate: String
        @Option(help: "Reference population for T- and Z-scores.") var ethnicity: String?
        @Option(help: "Who referred the patient, and why.") var referral: String
        @Option(name: .customLong("operator"), help: "The technologist (default: your login).") var operatorName: String?

        func run() async throws {
            var patient: [String: JSONValue] = ["id": .string(patientID), "name": .string(name), "sex": .string(sex), "birth_date": .string(birthDate)]
            if let ethnicity { patient["ethnicity"] = .string(ethnicity) }
            var params: [String: JSONValue] = ["patient": .object(patient), "referral": .string(referral)]
            if let operatorName { params["operator"] = .string(operatorName) }
            let r = try await options.call(.examCreate, .object(params))
            if options.json { Output.json(r); return }
            print("exam \(Output.number(r["id"])) for \(name) (\(patientID)): answer the checklist next (dexa exam checklist \(Output.number(r["id"])) ...)")
            ExamText.printChecklist(r["checklist"])
        }
    }

    struct Checklist: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Answer the pre-scan checklist (any subset; each answer is recorded with your name and the time).")
        @OptionGroup var options: ConnectionOptions
        @Argument(help: "The exam number.") var exam: Int
        @Option(help: "no, yes or unknown") var pregnancy: String?
        @Option(help: "none, or the date (YYYY-MM-DD) of the last contrast agent study") var contrast: String?
        @Option(help: "none, or the date of the last nuclear medicine study") var nuclear: String?
        @Option(help: "A site with a recent fracture (repeatable): ap_spine, left_hip, right_hip, lateral_spine") var fracture: [String] = []
        @Flag(help: "No recent fracture.") var noFracture = false
        @Option(help: "A site with metal: screws, a prosthesis (repeatable)") var metal: [String] = []
        @Flag(help: "No metal.") var noMetal = false
        @Flag(help: "Necklaces and navel piercing removed.") var jewelleryRemoved = false
        @Option(help: "Height measured today, cm.") var height: Double?
        @Option(help: "Weight measured today, kg.") var weight: Double?
        @Flag(help: "Height and weight were measured today.") var measuredToday = false
        @Flag(help: "The patient's identity is checked.") var identityConfirmed = false
        @Flag(help: "The referral is checked.") var referralConfirmed = false

        func run() async throws {
            var a: [String: JSONValue] = [:]
            if let pregnancy { a["pregnancy"] = .string(pregnancy) }
            if let contrast { a["contrast"] = .string(contrast) }
            if let nuclear { a["nuclear_medicine"] = .string(nuclear) }
            if noFracture || !fracture.isEmpty { a["recent_fracture"] = .array(fracture.map { .string($0) }) }
            if noMetal || !metal.isEmpty { a["metal"] = .array(metal.map { .string($0) }) }
            if jewelleryRemoved { a["jewellery_removed"] = .bool(true) }
            if let height { a["height_cm"] = .number(height) }
            if let weight { a["weight_kg"] = .number(weight) }
            if measuredToday { a["measured_today"] = .bool(true) }
            if identityConfirmed { a["identity_confirmed"] = .bool(true) }
            if referralConfirmed { a["referral_confirmed"] = .bool(true) }
            let r = try await options.call(.examChecklist, .object(["exam_id": .number(Double(exam)), "answers": .object(a)]))
            if options.json { Output.json(r); return }
            print("exam \(exam): \(r["state"]?.stringValue ?? "?")")
            ExamText.printChecklist(r["checklist"])
        }
    }

    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the exam site by site: progress, ETA, motion and timing warnings as they happen, the quick look after each site.")
        @OptionGroup var options: ConnectionOptions
        @Argument(help: "The exam number.") var exam: Int
        @Flag(help: "Go on to the next site without asking.") var auto = false

        func run() async throws {
            let id = JSONValue.number(Double(exam))
            var current = try await options.call(.examGet, .object(["exam_id": id]))
            var method: ControlMethod = current["state"]?.stringValue == "ready" ? .examStart : .examNext
            var params: JSONValue = .object(["exam_id": id])
            let bar = ProgressBar()
            while true {
                let state = current["state"]?.stringValue ?? "?"
                if state == "completed" || state == "aborted" { break }
                if method == .examNext, current["state"]?.stringValue != "in_progress" {
                    throw CLIError(message: "exam \(exam) is \(state): complete the checklist first")
                }
                let showBar = !options.json, json = options.json
                let (callMethod, callParams) = (method, params)
                let step = try await options.run { connection in
                    let follow = Task {
                        for await n in connection.notifications {
                            guard let v = n.params else { continue }
                            switch n.method {
                            case "exam.step" where showBar:
                                let phase = v["phase"]?.stringValue ?? ""
                                if phase == "positioning" { print("\(ExamText.title(v["site"]?.stringValue)): positioning") }
                                if phase == "scout" { print("\(ExamText.title(v["site"]?.stringValue)): scout (choosing the exposure mode)") }
                                if phase == "scanning" { print("\(ExamText.title(v["site"]?.stringValue)): scanning") }
                            case "scan.progress" where showBar:
                                bar.draw(done: v["lines"]?.intValue ?? 0, total: v["planned_lines"]?.intValue ?? 0,
                                         rate: v["lines_per_s"]?.numberValue ?? 0, eta: v["eta_s"]?.numberValue ?? 0)
                            case "exam.warning":
                                if json { Output.json(.object(["warning": v])) } else { print("\n  ! \(v["kind"]?.stringValue ?? ""): \(v["message"]?.stringValue ?? "")") }
                            default: break
                            }
                        }
                    }
                    defer { follow.cancel() }
                    return try await connection.call(callMethod.rawValue, callParams)
                }
                if !options.json { bar.finish() }
                current = step["exam"] ?? current
                if options.json { Output.json(step) } else { ExamText.printAttempt(step["attempt"]); print(step["message"]?.stringValue ?? "") }
                guard current["state"]?.stringValue == "in_progress" else { break }
                method = .examNext
                params = .object(["exam_id": id])
                if !auto {
                    print("Enter: next site · r: repeat this site · s: skip the next site · a: abort the exam > ", terminator: "")
                    switch readLine()?.trimmingCharacters(in: .whitespaces).lowercased() {
                    case "r": method = .examRepeat
                    case "s":
                        print("reason for skipping > ", terminator: "")
                        let reason = readLine() ?? "skipped at the console"
                        let site = JSONValue.string(Self.nextSite(current) ?? "")
                        current = try await options.call(.examSkip, .object(["exam_id": id, "site": site, "reason": .string(reason)]))
                        continue
                    case "a":
                        current = try await options.call(.examAbort, .object(["exam_id": id, "reason": .string("aborted at the console")]))
                        print("exam \(exam) aborted; X-rays off")
                        continue
                    case nil: return
                    default: break
                    }
                }
            }
            if !options.json { ExamText.printSummary(current) }
        }

        static func nextSite(_ exam: JSONValue) -> String? {
            guard case .array(let plan)? = exam["plan"], case .array(let attempts)? = exam["attempts"] else { return nil }
            for site in plan.compactMap(\.stringValue) {
                let latest = attempts.last { $0["site"]?.stringValue == site }?["status"]?.stringValue
                if latest != "completed" && latest != "skipped" { return site }
            }
            return nil
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Where an exam stands: state, sites, next site.")
        @OptionGroup var options: ConnectionOptions
        @Argument(help: "The exam number.") var exam: Int

        func run() async throws {
            let r = try await options.call(.examGet, .object(["exam_id": .number(Double(exam))]))
            if options.json { Output.json(r); return }
            ExamText.printSummary(r)
            if r["state"]?.stringValue == "in_progress", let next = Run.nextSite(r) { print("next: \(ExamText.title(next)) (dexa exam run \(exam))") }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Recent exams, newest first.")
        @OptionGroup var options: ConnectionOptions
        @Option(help: "How many.") var limit: Int = 20

        func run() async throws {
            let r = try await options.call(.examList, .object(["limit": .number(Double(limit))]))
            if options.json { Output.json(r); return }
            guard case .array(let exams) = r else { return }
            for e in exams {
                let attempts: [JSONValue] = if case .array(let a)? = e["attempts"] { a } else { [] }
                let done = attempts.filter { $0["status"]?.stringValue == "completed" }.count
                print("\(Output.number(e["id"]))  \(e["state"]?.stringValue ?? "?")  \(e["patient"]?["id"]?.stringValue ?? "?")  \(e["patient"]?["name"]?.stringValue ?? "?")  \(done) scans  \(e["created_at"]?.stringValue ?? "")")
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One exam in full: checklist, every attempt with its capture, quick look and warnings.")
        @OptionGroup var options: ConnectionOptions
        @Argument(help: "The exam number.") var exam: Int

        func run() async throws {
            let r = try await options.call(.examGet, .object(["exam_id": .number(Double(exam))]))
            if options.json { Output.json(r); return }
            ExamText.printSummary(r)
            ExamText.printChecklist(r["checklist"])
            if case .array(let attempts)? = r["attempts"] { for a in attempts { ExamText.printAttempt(a) } }
            if case .array(let w)? = r["warnings"] { for x in w { print("  ! \(x["message"]?.stringValue ?? "")") } }
        }
    }

    struct Skip: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Skip a site, with a reason.")
        @OptionGroup var options: ConnectionOptions
        @Argument(help: "The exam number.") var exam: Int
        @Argument(help: "ap_spine, left_hip, right_hip, lateral_spine") var site: String
        @Option(help: "Why.") var reason: String

        func run() async throws {
            let r = try await options.call(.examSkip, .object(["exam_id": .number(Double(exam)), "site": .string(site), "reason": .string(reason)]))
            if options.json { Output.json(r) } else { ExamText.printSummary(r) }
        }
    }

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a site to the exam's plan.")
        @OptionGroup var options: ConnectionOptions
        @Argument(help: "The exam number.") var exam: Int
        @Argument(help: "ap_spine, left_hip, right_hip, lateral_spine") var site: String

        func run() async throws {
            let r = try await options.call(.examAdd, .object(["exam_id": .number(Double(exam)), "site": .string(site)]))
            if options.json { Output.json(r) } else { ExamText.printSummary(r) }
        }
    }

    struct AbortExam: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "abort", abstract: "Abort the exam: a running scan stops at once, X-rays off.")
        @OptionGroup var options: ConnectionOptions
        @Argument(help: "The exam number.") var exam: Int
        @Option(help: "Why.") var reason: String = "aborted at the console"

        func run() async throws {
            let r = try await options.call(.examAbort, .object(["exam_id": .number(Double(exam)), "reason": .string(reason)]))
            if options.json { Output.json(r) } else { print("exam \(exam) aborted") }
        }
    }
}

/// How exams read on a terminal.
enum ExamText {
    static func title(_ site: String?) -> String {
        switch site {
        case "ap_spine": "AP lumbar spine"
        case "left_hip": "left hip"
        case "right_hip": "right hip"
        case "lateral_spine": "lateral spine (VFA)"
        default: site ?? "?"
        }
    }

    static func printChecklist(_ c: JSONValue?) {
        guard let c else { return }
        print("checklist: \(c["complete"] == .bool(true) ? "complete" : "not complete")" + (c["bmi"]?.numberValue.map { String(format: ", BMI %.1f", $0) } ?? ""))
        if case .array(let missing)? = c["missing"], !missing.isEmpty { print("  missing: " + missing.compactMap(\.stringValue).joined(separator: ", ")) }
        if case .array(let blocks)? = c["blocks"] { for b in blocks { print("  BLOCKED: \(b["reason"]?.stringValue ?? "")") } }
        if case .array(let plan)? = c["plan"] { print("  plan: " + plan.compactMap(\.stringValue).map { title($0) }.joined(separator: ", ")) }
        if case .array(let f)? = c["findings"] { for x in f { print("  finding: \(x.stringValue ?? "")") } }
    }

    static func printAttempt(_ a: JSONValue?) {
        guard let a else { return }
        var line = "\(title(a["site"]?.stringValue)) #\(Output.number(a["attempt"])): \(a["status"]?.stringValue ?? "?")"
        if let lines = a["lines"]?.intValue, let planned = a["planned_lines"]?.intValue, planned > 0 { line += ", \(lines) of \(planned) lines" }
        if let q = a["quick_look"] {
            if let bmd = q["mean_bone_bmd_g_cm2"]?.numberValue {
                line += String(format: "; bone %.1f cm², mean %.3f g/cm²", q["bone_area_cm2"]?.numberValue ?? 0, bmd)
            } else if let note = q["note"]?.stringValue {
                line += "; \(note)"
            }
        }
        print(line)
        if let reason = a["reason"]?.stringValue, a["status"]?.stringValue != "completed" { print("  \(reason)") }
        if let x = a["exposure"], let mode = x["mode"]?.stringValue {
            print(String(format: "  %@ mode, %.2f mA: %@", mode, (x["tube_current_ua"]?.numberValue ?? 0) / 1000, x["reason"]?.stringValue ?? ""))
        }
        if let d = a["dose"], let dap = d["dap_mgy_cm2"]?.numberValue {
            print(String(format: "  dose: %d scans, %.1f s of exposure, DAP %.2f mGy·cm²%@", d["scans"]?.intValue ?? 0,
                         (d["exposure_ms"]?.numberValue ?? 0) / 1000, dap, d["estimated"] == .bool(true) ? " (estimated)" : ""))
        }
        if let c = a["capture"]?.stringValue { print("  capture \(c)") }
        if case .array(let w)? = a["warnings"] { for x in w { print("  ! \(x["message"]?.stringValue ?? "")") } }
    }

    static func printSummary(_ e: JSONValue) {
        print("exam \(Output.number(e["id"])) \(e["state"]?.stringValue ?? "?"): \(e["patient"]?["name"]?.stringValue ?? "?") (\(e["patient"]?["id"]?.stringValue ?? "?"))")
        guard case .array(let plan)? = e["plan"] else { return }
        let attempts: [JSONValue] = if case .array(let a)? = e["attempts"] { a } else { [] }
        for site in plan.compactMap(\.stringValue) {
            let latest = attempts.last { $0["site"]?.stringValue == site }
            print("  \(title(site)): \(latest?["status"]?.stringValue ?? "to do")")
        }
    }
}

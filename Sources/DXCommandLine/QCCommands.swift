import ArgumentParser
import DXClinical
import DXControl
import DXReport
import Foundation

/// `dexa qc`: the daily phantom scan and the unit's QC state (docs/qc.md).
struct QCCommands: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "qc",
        abstract: "Phantom quality control: the daily QC scan, the unit's state against its baseline, a service reset.",
        subcommands: [Run.self, Status.self, History.self, Chart.self, Override.self, Reset.self, CrossCalibration.self])

    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Scan the QC phantom on the table and judge the result (audited).",
            discussion: """
                Put the QC phantom on the table first. The first scans after a reset set the \
                baseline (qc_baseline_scans in dexad.conf, 20 by default); later ones are judged \
                against it: ±1.5 % limits (outside once: scan again; twice: failed), a CUSUM per \
                region for drifts, a warning for a run on one side. A scan with lines missing or \
                ROIs not over the phantom's bone is refused and not added.
                """)
        @OptionGroup var options: ConnectionOptions
        @Option(help: "The QC phantom's ICD §8 JSON file (its ROIs), readable by dexad.") var phantom: String

        func run() async throws {
            let r = try await options.call(.qcRun, QCRunParams(phantom: phantom))
            if options.json { Output.json(r); return }
            let values = r.bmdGCm2.sorted { $0.key < $1.key }.map { String(format: "%@ %.4f", $0.key, $0.value) }.joined(separator: ", ")
            print("QC scan \(r.measurementID): \(values) g/cm²: \(QCText.verdict(r.verdict))")
            QCText.printStatus(r.status)
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The unit's QC state: in control or not and why, due today, the baseline.")
        @OptionGroup var options: ConnectionOptions
        @Flag(help: "Also list every result with its reading.") var history = false

        func run() async throws { try await QCText.status(options, history: history) }
    }

    struct History: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every QC result since the latest reset with its reading (as `status --history`).")
        @OptionGroup var options: ConnectionOptions

        func run() async throws { try await QCText.status(options, history: true) }
    }

    struct Chart: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Draw the Shewhart and CUSUM charts of every region since the latest reset (PDF or PNG).")
        @OptionGroup var options: ConnectionOptions
        @Option(help: "Write the charts as a PDF (landscape A4) here.") var pdf: String?
        @Option(help: "Write the charts as a PNG (150 dpi) here.") var png: String?

        func validate() throws {
            guard pdf != nil || png != nil || options.json else { throw ValidationError("give --pdf FILE, --png FILE or --json") }
        }

        func run() async throws {
            let r = try await options.call(.qcStatus, QCStatusParams(history: true))
            if options.json { Output.json(r) }
            let input = QCText.chartInput(r)
            if let pdf { try QCChart.pdf(input, to: pdf); if !options.json { print("wrote \(pdf)") } }
            if let png { try QCChart.png(input, to: png); if !options.json { print("wrote \(png)") } }
        }
    }

    struct CrossCalibration: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "cross-calibration",
            abstract: "The cross-calibration after the latest reset, or of two units' QC histories.",
            discussion: """
                On a unit, the tenth phantom scan after a service reset is compared with the ten                 before it: per region the % difference of the means, passing within 1 % (docs/qc.md).                 With --before and --after, two histories saved with `dexa qc history --json` (two                 units, or one before and after a change) are compared the same way, offline.
                """)
        @OptionGroup var options: ConnectionOptions
        @Option(help: "A QC history (`dexa qc history --json`) of the unit or time before.") var before: String?
        @Option(help: "A QC history (`dexa qc history --json`) of the unit or time after.") var after: String?

        func validate() throws {
            guard (before == nil) == (after == nil) else { throw ValidationError("give both --before and --after, or neither") }
        }

        func run() async throws {
            let record: QualityControl.CrossCalibration
            if let before, let after {
                do {
                    record = try QualityControl.crossCalibration(before: try QCText.measurements(before), after: try QCText.measurements(after),
                                                                 scans: 10)
                } catch let e as QualityControl.CrossCalibrationError {
                    throw CLIError(status: .badInput, message: e.description)
                }
            } else {
                let r = try await options.call(.qcStatus, QCStatusParams())
                guard let c = r.crossCalibration else {
                    throw CLIError(status: .failure, message: r.reset == nil
                                         ? "no cross-calibration: the unit's QC history has never been reset"
                                         : "no cross-calibration yet: \(r.scans) of the 10 phantom scans after the reset of \(r.reset?.at ?? "")")
                }
                record = c
            }
            if options.json { Output.json(record); return }
            QCText.printCrossCalibration(record)
        }
    }

    struct Override: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Let patient exams start despite the QC state (service group; audited).",
            discussion: """
                For a failed QC, or none today under qc_when_due = block, when the patients of the                 day cannot wait and the unit is known to be sound. The override holds until the                 next QC scan or the end of the day, and every report of an exam started under it                 prints the reason.
                """)
        @OptionGroup var options: ConnectionOptions
        @Option(help: "Why patients may be scanned: what was checked, and by whom it was agreed.") var reason: String

        func run() async throws {
            let r = try await options.call(.qcOverride, QCOverrideParams(reason: reason))
            if options.json { Output.json(r); return }
            print("QC lockout overridden until the next QC scan or the end of the day")
            QCText.printStatus(r)
        }
    }

    struct Reset: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Start a new QC history and baseline after a service action (service group; audited).")
        @OptionGroup var options: ConnectionOptions
        @Option(help: "What was done: a calibration, a part replaced, the drift's cause found.") var reason: String

        func run() async throws {
            let r = try await options.call(.qcReset, QCResetParams(reason: reason))
            if options.json { Output.json(r); return }
            print("a new QC history starts: the next \(r.baselineScans) phantom scans set the baseline")
            QCText.printStatus(r)
        }
    }
}

enum QCText {
    /// `qc status` and `qc history`: the state, then (with `history`) every result since the reset.
    static func status(_ options: ConnectionOptions, history: Bool) async throws {
        let r = try await options.call(.qcStatus, QCStatusParams(history: history))
        if options.json { Output.json(r); return }
        printStatus(r)
        printHistory(r)
    }

    static func verdict(_ v: QualityControl.Verdict) -> String {
        switch v {
        case .baseline: "part of the baseline"
        case .pass: "pass"
        case .repeatRequired: "outside the limits: scan the phantom again"
        case .fail: "FAILED"
        }
    }

    static func printStatus(_ r: QCStatusResult) {
        let words: String
        switch r.condition {
        case .baselineIncomplete: words = "baseline incomplete (\(r.scans) of \(r.baselineScans) scans)"
        case .inControl: words = "in control"
        case .repeatRequired: words = "repeat required"
        case .failed: words = "FAILED (lifted by a result inside the limits)"
        case .drifted: words = "FAILED: drift (lifted only by a service reset after the cause is found)"
        }
        print("QC on \(r.device): \(words)\(r.due ? "; due today" : "")")
        if let reason = r.reason { print("  why: \(reason)") }
        for w in r.warnings { print("  warning: \(w)") }
        if let b = r.baseline {
            let regions = b.regions.sorted { $0.key < $1.key }
                .map { String(format: "%@ %.4f ± %.4f", $0.key, $0.value.meanGCm2, $0.value.sdGCm2) }.joined(separator: ", ")
            print("  baseline (\(b.measurementIDs.count) scans): \(regions) g/cm²; limits ±\(r.rules.limitPercent) %")
        }
        if let last = r.lastPass { print("  last pass: \(last)") }
        if let reset = r.reset { print("  history since \(reset.at), reset by \(reset.by): \(reset.reason)") }
        switch r.patientExams.gate {
        case "blocked": print("  patient exams: LOCKED: \(r.patientExams.message ?? "")")
        case "overridden": print("  patient exams: allowed under an override: \(r.patientExams.message ?? "")")
        case "warn": print("  patient exams: allowed with a warning on the report: \(r.patientExams.message ?? "")")
        default: print("  patient exams: allowed")
        }
    }

    static func printCrossCalibration(_ c: QualityControl.CrossCalibration) {
        print("cross-calibration, \(c.before.count) scans before and \(c.after.count) after: \(c.passes ? "passes" : "FAILS") (limit ±\(c.limitPercent) %)")
        for (name, r) in c.regions.sorted(by: { $0.key < $1.key }) {
            print(String(format: "  %@  %.4f → %.4f g/cm²  %+.2f %% ± %.2f  %@", name, r.beforeGCm2, r.afterGCm2, r.differencePercent, r.standardErrorPercent,
                         r.passes ? "pass" : "FAIL"))
        }
    }

    /// The results of a saved `qc history --json` (or `qc status --history --json`): each
    /// point's measurement rebuilt from its baseline and deviation is not exact, so the file
    /// must carry the results themselves (`results`).
    static func measurements(_ path: String) throws -> [QualityControl.Measurement] {
        guard let data = FileManager.default.contents(atPath: path) else { throw CLIError(status: .badInput, message: "cannot read \(path)") }
        do {
            let status = try JSONDecoder().decode(QCStatusResult.self, from: data)
            guard let results = status.results, !results.isEmpty else {
                throw CLIError(status: .badInput, message: "\(path) holds no QC results (save it with `dexa qc history --json`)")
            }
            return results
        } catch let e as CLIError { throw e } catch {
            throw CLIError(status: .badInput, message: "\(path) is not a QC history (`dexa qc history --json`): \(error)")
        }
    }

    static func chartInput(_ r: QCStatusResult) -> QCChart.Input {
        let state: String = switch r.condition {
        case .baselineIncomplete: "baseline incomplete (\(r.scans) of \(r.baselineScans) scans)"
        case .inControl: "in control"
        case .repeatRequired: "repeat required"
        case .failed: "FAILED"
        case .drifted: "FAILED: drift"
        }
        return QCChart.Input(device: r.device, state: state, points: r.points ?? [], baseline: r.baseline, rules: r.rules,
                             since: r.reset.map { "the reset of \(String($0.at.prefix(10))) (\($0.reason))" })
    }

    static func printHistory(_ r: QCStatusResult) {
        for p in r.points ?? [] {
            let d = p.deviationPercent.sorted { $0.key < $1.key }.map { String(format: "%@ %+.2f %%", $0.key, $0.value) }.joined(separator: ", ")
            print("  \(p.measurementID)  \(p.at)  \(p.verdict.rawValue.padding(toLength: 15, withPad: " ", startingAt: 0))  \(d)\(p.reasons.isEmpty ? "" : "  (\(p.reasons.joined(separator: "; ")))")")
        }
    }
}

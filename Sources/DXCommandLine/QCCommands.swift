import ArgumentParser
import DXClinical
import DXControl
import Foundation

/// `dexa qc`: the daily phantom scan and the unit's QC state (docs/qc.md).
struct QCCommands: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "qc",
        abstract: "Phantom quality control: the daily QC scan, the unit's state against its baseline, a service reset.",
        subcommands: [Run.self, Status.self, Reset.self])

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

        func run() async throws {
            let r = try await options.call(.qcStatus, QCStatusParams(history: history))
            if options.json { Output.json(r); return }
            QCText.printStatus(r)
            for p in r.points ?? [] {
                let d = p.deviationPercent.sorted { $0.key < $1.key }.map { String(format: "%@ %+.2f %%", $0.key, $0.value) }.joined(separator: ", ")
                print("  \(p.measurementID)  \(p.at)  \(p.verdict.rawValue.padding(toLength: 15, withPad: " ", startingAt: 0))  \(d)\(p.reasons.isEmpty ? "" : "  (\(p.reasons.joined(separator: "; ")))")")
            }
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
    }
}

import ArgumentParser
import DXAcquisition
import DXAnalysis
import DXClinical
import DXControl
import DXDecomposition
import Foundation

/// `dexa reanalyze`: the analysis run again over many captures, on every core (issue 18).
struct Reanalyze: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Analyse many captures again, on every core: one line per capture, then a summary.",
        discussion: """
            Each capture is measured against the calibration its unit was using when it was made: the newest \
            calibration capture of the same unit among the files given, made at or before it, that the acceptance rule \
            accepts (--calibration names one for all instead). Calibration captures are the references and scouts have \
            nothing to measure: neither is analysed. A capture that cannot be analysed is reported and the batch goes \
            on; the exit status is 2 when any failed.
            """)
    @Argument(help: "Captures (.dxcap), or folders whose .dxcap files are taken.") var paths: [String]
    @Option(help: "One calibration capture for every capture, as `dexa analyze --calibration`.") var calibration: String?
    @Option(help: "Captures analysed at the same time (default: the machine's cores).") var jobs: Int?
    @Flag(help: "Analyse even with a calibration the acceptance rule refuses, or one from another unit (each result says so).") var force = false
    @Option(help: "An age- and sex-matched reference for Z-scores (JSON, docs/clinical-references.md).") var zReference: String?
    @OptionGroup var output: OutputOptions

    /// What is printed as the batch goes: counts kept in one place.
    actor Tally {
        var done = 0, failed = 0, incomplete = 0, unanalysed = 0
        func add(_ o: Reanalysis.Outcome) -> Int {
            done += 1
            if !o.ok { failed += 1 }
            if let p = o.patient {
                if p.analysisError != nil { unanalysed += 1 } else if !p.complete { incomplete += 1 }
            } else if let a = o.phantom, !a.complete {
                incomplete += 1
            }
            return done
        }
    }

    struct Summary: Encodable, Sendable {
        /// `incomplete`: lines or pixels missing from an ROI; `unanalysed`: patient scans the
        /// automatic analysis could not read (each line says why).
        var captures: Int, analysed: Int, failed: Int, incomplete: Int, unanalysed: Int, calibrations: Int, scouts: Int, jobs: Int
        var seconds: Double, capturesPerS: Double
        enum CodingKeys: String, CodingKey {
            case captures, analysed, failed, incomplete, unanalysed, calibrations, scouts, jobs, seconds
            case capturesPerS = "captures_per_s"
        }
    }

    func run() async throws {
        if let jobs, !(1...256).contains(jobs) { throw Offline.fail("reanalyze", "--jobs: 1 to 256, not \(jobs)") }
        var reference = ReferenceSet.nhanes
        if let zReference {
            do { reference = reference.with(ageMatched: try AgeMatchedReference.load(path: zReference)) } catch {
                throw Offline.fail("reanalyze", "--z-reference: \(error.description)")
            }
        }
        // A calibration named for all is fitted and judged once, before anything: if it cannot
        // measure, nothing can (one line, exit 2), not every capture failing with it.
        var fitted: [String: Calibration] = [:]
        if let calibration {
            do throws(AnalysisError) {
                let c = try CaptureAnalysis.fit(try CaptureReader.read(path: calibration), path: calibration)
                if !c.verdict.accepted && !force { throw AnalysisError.calibrationRefused(calibration, c.verdict) }
                fitted[calibration] = c
            } catch {
                throw Offline.fail("reanalyze", "--calibration: \(error.description)")
            }
        }
        let (files, missing) = Reanalysis.files(paths)
        var plan = Reanalysis.plan(files.map { path in (path, Result { () throws(AnalysisError) in try CaptureReader.header(path: path) }) },
                                   calibration: calibration)
        plan.unreadable = missing + plan.unreadable
        let width = jobs ?? ProcessInfo.processInfo.activeProcessorCount
        let total = plan.jobs.count + plan.unreadable.count
        guard total > 0 else {
            throw Offline.fail("reanalyze", "no capture to analyse in \(paths.joined(separator: ", ")) (\(plan.calibrations.count) calibration captures, \(plan.scouts.count) scouts)")
        }
        let json = output.json
        let tally = Tally()
        let clock = ContinuousClock(), start = clock.now
        let bar = ProgressBar(unit: "captures")
        @Sendable func seconds() -> Double { let d = clock.now - start; return Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18 }
        await Reanalysis.run(plan, jobs: width, force: force, reference: reference, fitted: fitted) { outcome in
            let done = await tally.add(outcome)
            if bar.enabled { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
            if json { Output.tagged("capture", outcome) } else { print(Self.line(outcome)) }
            let t = seconds(), rate = Double(done) / max(t, 1e-9)
            bar.draw(done: done, total: total, rate: rate, eta: Double(total - done) / max(rate, 1e-9))
        }
        bar.finish()
        let t = seconds()
        let failed = await tally.failed, incomplete = await tally.incomplete, unanalysed = await tally.unanalysed
        let summary = Summary(captures: total, analysed: total - failed, failed: failed, incomplete: incomplete, unanalysed: unanalysed,
                              calibrations: plan.calibrations.count, scouts: plan.scouts.count,
                              jobs: width, seconds: (t * 1000).rounded() / 1000, capturesPerS: (Double(total) / max(t, 1e-9) * 100).rounded() / 100)
        if json {
            Output.tagged("summary", summary)
        } else {
            print(String(format: "%d captures: %d analysed (%d incomplete, %d without an automatic analysis), %d failed; %d calibration captures and %d scouts not analysed; %.1f s on %d jobs (%.2f captures/s)",
                         total, total - failed, incomplete, unanalysed, failed, plan.calibrations.count, plan.scouts.count, t, width, summary.capturesPerS))
        }
        if failed > 0 { throw ExitCode(ExitStatus.offlineFailure.rawValue) }
    }

    /// One line a capture: what it is and its main figures, or why it failed.
    static func line(_ o: Reanalysis.Outcome) -> String {
        guard o.ok else {
            return "\(o.capture): FAILED: \(o.error ?? "")" + (o.passedOver.isEmpty ? "" : "\n  newer calibrations of its unit passed over: " + o.passedOver.joined(separator: "; "))
        }
        var parts: [String] = []
        if let p = o.patient {
            parts.append(p.region ?? "patient scan")
            if let why = p.analysisError {
                parts.append("no automatic analysis: \(why)")
            } else if let v = p.vfaSummary {
                parts.append(v)
            } else {
                parts += p.rois.prefix(6).map { r in
                    r.bmdGCm2.map { String(format: "%@ %.3f g/cm²", r.name, $0) + (r.tScore.map { String(format: " T %+.1f", $0) } ?? "") } ?? "\(r.name) —"
                }
            }
            if p.missingLines > 0 {
                parts.append("INCOMPLETE (\(p.missingLines) lines missing)")
            } else if p.analysisError == nil && !p.complete {
                parts.append("INCOMPLETE (an ROI lost pixels)")
            }
            if p.forced { parts.append("FORCED") }
        } else if let a = o.phantom {
            parts.append(a.rois.map { String(format: "%@ %.4f g/cm²", $0.name, $0.bmdGcm2) }.joined(separator: ", "))
            if a.missingLines > 0 {
                parts.append("INCOMPLETE (\(a.missingLines) lines missing)")
            } else if !a.complete {
                parts.append("INCOMPLETE (an ROI lost pixels)")
            }
            if a.forced { parts.append("FORCED") }
        }
        var line = "\(o.capture): " + parts.joined(separator: "; ") + " [calibration \(o.calibration.map { ($0 as NSString).lastPathComponent } ?? "?")]"
        if !o.passedOver.isEmpty { line += "\n  newer calibrations of its unit passed over: " + o.passedOver.joined(separator: "; ") }
        return line
    }
}

import DXAcquisition
import DXAnalysis
import DXClinical
import Foundation

/// The clinical results as text: one table per site (region, BMD, T, Z, BMC, area), the
/// excluded ROIs with their reasons, the findings, and the exam's diagnosis. The same
/// renderer serves `dexa analyze` on a patient scan and `dexa exam report`.
enum ResultsText {
    static func number(_ v: Double?, _ format: String) -> String { v.map { String(format: format, $0) } ?? "—" }

    static func printSite(_ r: SiteResult) {
        if let vfa = r.vfa {
            printVFA(vfa)
            for w in r.warnings { print("  ! \(w.message)") }
            print("  analysis \(r.analysisVersion)")
            return
        }
        print("region     BMD g/cm²      T      Z   BMC g  area cm²")
        for roi in r.rois {
            var line = roi.name.padding(toLength: 10, withPad: " ", startingAt: 0)
            line += number(roi.bmdGCm2, "%9.3f").leftPadded(10)
            line += number(roi.tScore, "%+.1f").leftPadded(7) + number(roi.zScore, "%+.1f").leftPadded(7)
            line += number(roi.bmdGCm2 == nil ? nil : roi.bmcG, "%.2f").leftPadded(8) + number(roi.bmdGCm2 == nil ? nil : roi.areaCm2, "%.2f").leftPadded(10)
            if roi.excluded { line += "  excluded" }
            if !roi.forDiagnosis { line += "  (not for diagnosis)" }
            print(line)
        }
        for roi in r.rois where roi.excluded { print("  \(roi.name) excluded: \(roi.reason ?? "")") }
        if let used = r.roi("L1-L4")?.vertebraeUsed, used.count < 4, !used.isEmpty { print("  spine BMD over \(used.joined(separator: ", "))") }
        if let labelling = r.spine?.labelling { print("  \(labelling.words)") }
        for w in r.warnings { print("  ! \(w.message)") }
        if let i = r.interpretation {
            if let who = i.whoClass { print("  WHO classification: \(who.words) (for \(i.basis))") }
            if let z = i.zInterpretation {
                print("  Z-score: \(z == .belowExpectedRange ? "below" : "within") the expected range for age (for \(i.basis))")
            }
            if let note = i.note { print("  \(i.basis): \(note)") }
        }
        print("  reference \(r.reference); analysis \(r.analysisVersion)")
    }

    /// The lateral spine: one row per vertebra, heights in mm, Genant grade and type.
    static func printVFA(_ m: VFAMeasurement) {
        print("vertebra  anterior  middle  posterior  grade  type")
        for v in m.vertebrae {
            var line = v.name.padding(toLength: 8, withPad: " ", startingAt: 0)
            guard v.readable else { print(line + "  not readable: \(v.reason ?? "")"); continue }
            line += number(v.anteriorMM, "%.1f").leftPadded(10) + number(v.middleMM, "%.1f").leftPadded(8) + number(v.posteriorMM, "%.1f").leftPadded(11)
            // A grade from the heights read, a corner's uncertain: the least it can be.
            line += (v.gradeShown ?? "—").leftPadded(7)
            if v.gradeBy != nil {
                line += "  " + (v.kind?.rawValue ?? "") + " (the reader's; measured " + v.measuredGradeShown + ")"
            } else if let kind = v.kind {
                line += "  " + kind.rawValue + String(format: " (%.0f %% lost)", (v.heightLoss ?? 0) * 100)
            }
            if v.pointsBy != nil { line += "  points placed by the reader" }
            print(line)
            if v.uncertainHeight != nil, v.gradeBy == nil, let reason = v.reason { print("          " + reason) }
        }
        print("  \(m.summary)")
    }

    static func printResults(_ r: ExamResults) {
        let age = r.patient.ageYears.map { String(format: ", %.0f years", $0.rounded(.down)) } ?? ""
        print("exam \(r.examID) (\(r.state.rawValue)), \(r.examDate): \(r.patient.name) [\(r.patient.id)], \(r.patient.sex)\(age)")
        for q in r.qualityControl { print("QUALITY CONTROL: \(q)") }
        for s in r.sites {
            print("")
            print("\(s.title)" + (s.attempt.map { " (attempt \($0))" } ?? "") + ":")
            if let result = s.result { printSite(result) } else { print("  no result: \(s.note ?? s.status)") }
            for c in s.corrections { printCorrection(c, indent: "  ") }
            if let d = s.dose { print(String(format: "  dose: %.2f mGy·cm² (%d scans)%@", d.dapMGyCm2, d.scans, d.estimated ? ", estimated" : "")) }
        }
        print("")
        let d = r.diagnosis
        if let t = d.tScore, let roi = d.roi, let site = d.site {
            print("diagnosis: \(d.words), lowest T-score \(reportedSigned(t, digits: 1)) at \(roi) (\(site)); WHO classes apply to \(d.basis)")
        } else if let z = d.zScore, let roi = d.roi, let site = d.site {
            print("bone density \(d.words): lowest Z-score \(reportedSigned(z, digits: 1)) at \(roi) (\(site)); Z-scores apply to \(d.basis)")
        } else {
            print("diagnosis: \(d.words)")
        }
        if let note = d.note { print("  \(note)") }
        if let v = r.vfaIndication {
            print("VFA \(v.indicated ? "indicated" : "not indicated") (ISCD 2019): \(v.reasons.joined(separator: "; "))")
            if !v.unanswered.isEmpty { print("  not answered: \(v.unanswered.joined(separator: ", "))") }
        }
        print(String(format: "exam dose: %.2f mGy·cm² DAP over %d scans%@", r.dose.dapMGyCm2, r.dose.scans, r.dose.estimated ? " (estimated in part)" : ""))
        if let f = r.followUp { printFollowUp(f) }
    }

    /// One correction: who, when, what and why, and the numbers that changed.
    static func printCorrection(_ c: CorrectionRecord, indent: String = "") {
        print("\(indent)\(c.site == "lateral_spine" ? "VFA" : "ROIs") corrected by \(c.by) at \(c.at): \(c.change) (\(c.reason))")
        if let note = c.note { print("\(indent)  ! \(note)") }
        let before = Dictionary(c.before.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        for a in c.after {
            let b = before[a.name]
            if a.grade != nil || b?.grade != nil || c.site == "lateral_spine" {
                // A vertebra: its grade before and after.
                guard b?.grade != a.grade || b?.type != a.type || b?.excluded != a.excluded else { continue }
                func words(_ v: CorrectionRecord.ROIValue?) -> String {
                    guard let v, !v.excluded else { return "not read" }
                    return "grade " + (v.grade.map(String.init) ?? "—") + (v.type.map { " \($0.rawValue)" } ?? "")
                }
                print("\(indent)  \(a.name): \(words(b)) → \(words(a))")
                continue
            }
            guard b?.bmdGCm2 != a.bmdGCm2 || b?.excluded != a.excluded else { continue }
            let was = b.map { number($0.bmdGCm2, "%.3f") + ($0.excluded ? " excluded" : "") } ?? "—"
            print("\(indent)  \(a.name): \(was) → \(number(a.bmdGCm2, "%.3f"))\(a.excluded ? " excluded" : "") g/cm²")
        }
    }

    /// A signed figure as reported: a change that rounds to zero is 0, never −0.
    static func signed(_ v: Double, _ digits: Int) -> String {
        reportedSigned(v, digits: digits)
    }

    static func printFollowUp(_ f: FollowUp) {
        print("")
        print("since exam \(f.prior.examID) of \(f.prior.examDate):")
        if !f.changes.isEmpty { print("site        region     prior  now g/cm²  change g/cm²      %   LSC g/cm²  significant") }
        for c in f.changes {
            var line = c.site.padding(toLength: 12, withPad: " ", startingAt: 0) + c.roi.padding(toLength: 10, withPad: " ", startingAt: 0)
            line += String(format: "%.3f", c.priorBMDGCm2).leftPadded(6) + String(format: "%.3f", c.bmdGCm2).leftPadded(11)
            line += signed(c.changeGCm2, 3).leftPadded(14) + signed(c.changePercent, 1).leftPadded(7)
            line += number(c.lscGCm2, "%.3f").leftPadded(12)
            line += (c.significant.map { $0 ? (c.changeGCm2 < 0 ? "yes, a loss" : "yes, a gain") : "no" } ?? "not judged").leftPadded(13)
            print(line)
            for note in c.notes { print("  \(c.roi): \(note)") }
        }
        for note in f.notes { print("  \(note)") }
    }
}

extension String {
    func leftPadded(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}

import DXAcquisition
import DXAnalysis
import Foundation

/// The clinical results as text: one table per site (region, BMD, T, Z, BMC, area), the
/// excluded ROIs with their reasons, the findings, and the exam's diagnosis. The same
/// renderer serves `dexa analyze` on a patient scan and `dexa exam report`.
enum ResultsText {
    static func number(_ v: Double?, _ format: String) -> String { v.map { String(format: format, $0) } ?? "—" }

    static func printSite(_ r: SiteResult) {
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
        if let labelling = r.spine?.labelling {
            let cue = labelling.decidedBy == .iliacCrests ? "the iliac crests (L4–L5)" : "the lowest ribs (T12)"
            print("  vertebrae named from \(cue)" + (labelling.cuesAgree == true ? "; the ribs agree" : ""))
        }
        for w in r.warnings { print("  ! \(w.message)") }
        if let i = r.interpretation {
            if let who = i.whoClass { print("  WHO classification: \(who.words) (for \(i.basis))") }
            if let note = i.note { print("  \(i.basis): \(note)") }
        }
        print("  reference \(r.reference); analysis \(r.analysisVersion)")
    }

    static func printResults(_ r: ExamResults) {
        let age = r.patient.ageYears.map { String(format: ", %.0f years", $0.rounded(.down)) } ?? ""
        print("exam \(r.examID) (\(r.state.rawValue)), \(r.examDate): \(r.patient.name) [\(r.patient.id)], \(r.patient.sex)\(age)")
        for s in r.sites {
            print("")
            print("\(s.title)" + (s.attempt.map { " (attempt \($0))" } ?? "") + ":")
            if let result = s.result { printSite(result) } else { print("  no result: \(s.note ?? s.status)") }
            if let d = s.dose { print(String(format: "  dose: %.2f mGy·cm² (%d scans)%@", d.dapMGyCm2, d.scans, d.estimated ? ", estimated" : "")) }
        }
        print("")
        let d = r.diagnosis
        if let t = d.tScore, let roi = d.roi, let site = d.site {
            print("diagnosis: \(d.words), lowest T-score \(String(format: "%+.1f", t)) at \(roi) (\(site)); WHO classes apply to \(d.basis)")
        } else {
            print("diagnosis: \(d.words)")
        }
        if let note = d.note { print("  \(note)") }
        print(String(format: "exam dose: %.2f mGy·cm² DAP over %d scans%@", r.dose.dapMGyCm2, r.dose.scans, r.dose.estimated ? " (estimated in part)" : ""))
        if let f = r.followUp { printFollowUp(f) }
    }

    static func printFollowUp(_ f: FollowUp) {
        print("")
        print("since exam \(f.prior.examID) of \(f.prior.examDate):")
        if !f.changes.isEmpty { print("site        region     prior  now g/cm²  change g/cm²      %   LSC g/cm²  significant") }
        for c in f.changes {
            var line = c.site.padding(toLength: 12, withPad: " ", startingAt: 0) + c.roi.padding(toLength: 10, withPad: " ", startingAt: 0)
            line += String(format: "%.3f", c.priorBMDGCm2).leftPadded(6) + String(format: "%.3f", c.bmdGCm2).leftPadded(11)
            line += String(format: "%+.3f", c.changeGCm2).leftPadded(14) + String(format: "%+.1f", c.changePercent).leftPadded(7)
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

@testable import DXAnalysis
import DXClinical
import DXDecomposition
import DXSimulator
import Foundation
import Testing

/// A technologist's corrections of the automatic ROIs (issue 11, item 4): disc lines placed by
/// hand where the analysis missed one, the vertebrae renamed, the neck box moved; each applied
/// over the same decomposed scan, and refused when it does not fit the scan.
@Suite("ROI corrections")
struct ROICorrectionTests {
    /// Disc lines from the scene: midway between one body's lower end plate and the next one's
    /// upper (each body its height about its centre), and above the first and below the last.
    static func discLines(_ spec: PatientSpec) -> [Double] {
        let heights = Dictionary(spec.spine.vertebrae.map { ($0.name, $0.heightMM) }, uniquingKeysWith: { a, _ in a })
        let bodies = spec.spine.truth().compactMap { t in heights[t.name].map { (top: t.centreYMM - $0 / 2, bottom: t.centreYMM + $0 / 2) } }
            .sorted { $0.top < $1.top }
        let mids = zip(bodies, bodies.dropFirst()).map { ($0.bottom + $1.top) / 2 }
        guard let first = bodies.first, let last = bodies.last else { return mids }
        return [first.top - 4] + mids + [last.bottom + 4]
    }

    /// L2 on L3 with no disc between them: the analysis refuses (it cannot tell where one ends);
    /// with the technologist's disc lines both are measured and named.
    @Test func aMissedDiscPlacedByHand() async throws {
        var spec = PatientSpec()
        spec.spine.vertebrae[3].discBelowMM = 0
        let scan = try await SharedScanner.shared.scan(spec, noise: 9)
        #expect(throws: SpineAnalysisError.self) { try SpineAnalysis.measure(scan) }
        let top = scan.geometry.firstLineYMM, bottom = top + Double(scan.geometry.lines - 1) * scan.geometry.lineStepMM
        let lines = Self.discLines(spec).filter { $0 > top && $0 < bottom }
        let m = try SpineAnalysis.measure(scan, correction: ROICorrection(discLinesMM: lines))
        let truth = lumbarTruth(spec)
        for name in ["L1", "L2", "L3", "L4"] {
            let v = try #require(m.vertebra(name), "\(name) not measured")
            let t = try #require(truth.vertebrae[name])
            print(String(format: "hand-placed discs %@: BMD %.4f (truth %.4f, %+.1f %%)", name, v.bmdGCm2 ?? .nan, t.bmdGCm2, ((v.bmdGCm2 ?? 0) / t.bmdGCm2 - 1) * 100))
            #expect(abs((v.bmdGCm2 ?? 0) / t.bmdGCm2 - 1) < 0.03, "\(name)")
        }
        let result = SpineAnalysis.interpret(m, patient: nil)
        // Against the truth of the vertebrae it used (the ISCD rules may leave one out).
        let used = try #require(result.roi("L1-L4")?.vertebraeUsed).compactMap { truth.vertebrae[$0] }
        let usedTruth = used.reduce(0) { $0 + $1.bmcG } / used.reduce(0) { $0 + $1.areaCm2 }
        print("hand-placed discs: \(result.rois.map { "\($0.name) \($0.bmdGCm2 ?? .nan) \($0.reason ?? "")" }); truth over those used \(usedTruth)")
        #expect(abs((result.roi("L1-L4")?.bmdGCm2 ?? 0) / usedTruth - 1) < 0.02)
        #expect(m.vertebrae.map(\.upper.yMM) == Array(lines.dropLast().prefix(m.vertebrae.count)))
    }

    /// Moving one disc line moves the two vertebrae's boundary: their areas change, the rest
    /// stay as they were.
    @Test func aMovedDiscLineChangesItsTwoVertebrae() async throws {
        let scan = try await SharedScanner.shared.scan(PatientSpec(), noise: 1)
        let auto = try SpineAnalysis.measure(scan)
        let l2 = try #require(auto.vertebra("L2"))
        var lines = auto.vertebrae.map(\.upper.yMM) + [try #require(auto.vertebrae.last).lower.yMM]
        let k = try #require(lines.firstIndex(of: l2.lower.yMM))
        lines[k] += 3
        let moved = try SpineAnalysis.measure(scan, correction: ROICorrection(discLinesMM: lines))
        let l2m = try #require(moved.vertebra("L2")), l3m = try #require(moved.vertebra("L3")), l3 = try #require(auto.vertebra("L3"))
        print(String(format: "L2-L3 moved 3 mm: L2 area %.2f → %.2f cm², L3 %.2f → %.2f", l2.areaCm2, l2m.areaCm2, l3.areaCm2, l3m.areaCm2))
        #expect(l2m.areaCm2 > l2.areaCm2 && l3m.areaCm2 < l3.areaCm2)
        #expect(l2m.lower.slope == l2.lower.slope, "a moved line keeps the slope found")
        #expect(moved.vertebra("L1") == auto.vertebra("L1") && moved.vertebra("L4") == auto.vertebra("L4"))
        #expect(moved.labelling == auto.labelling)
    }

    /// Six lumbar vertebrae: the crests name them; the technologist names them from the ribs'
    /// side instead. The names follow, and the record says who decided and what the crests said.
    @Test func aRelabelNamesTheVertebraeAndSaysWhoDid() async throws {
        var spec = PatientSpec()
        spec.spine = APSpine.adult(l1TopMM: 612, sixLumbar: true)
        let scan = try await SharedScanner.shared.scan(spec, noise: 6)
        let auto = try SpineAnalysis.measure(scan)
        let l3 = try #require(auto.vertebra("L3"))
        let renamed = try SpineAnalysis.measure(scan, correction: ROICorrection(l4YMM: l3.centreYMM))
        print("relabelled: \(renamed.vertebrae.map(\.name)) \(renamed.labelling) \(renamed.warnings.map(\.code))")
        #expect(renamed.labelling.decidedBy == .technologist)
        #expect(renamed.vertebra("L4")?.centreYMM == l3.centreYMM)
        #expect(renamed.vertebra("L3")?.centreYMM == auto.vertebra("L2")?.centreYMM)
        #expect(renamed.warnings.contains { $0.code == "labels_corrected" && $0.message.contains("iliac crests") })
        // Naming it what it already is changes nothing but who decided.
        let l4 = try #require(auto.vertebra("L4"))
        let same = try SpineAnalysis.measure(scan, correction: ROICorrection(l4YMM: l4.centreYMM))
        #expect(same.vertebrae.map(\.name) == auto.vertebrae.map(\.name) && !same.warnings.contains { $0.code == "labels_corrected" })
    }

    @Test(arguments: [ProximalFemur.Side.left, .right])
    func theNeckBoxMovedAlongTheNeck(_ side: ProximalFemur.Side) async throws {
        let scan = try await SharedScanner.shared.hip(PatientSpec(), side, noise: 11)
        let auto = try HipAnalysis.measure(scan)
        let moved = try HipAnalysis.measure(scan, correction: ROICorrection(neckBoxShiftMM: 4))
        // The box's centre moved 4 mm along the neck's axis, towards the trochanter (away from the head).
        func centre(_ box: [TablePoint]) -> TablePoint {
            TablePoint(box.map(\.xMM).reduce(0, +) / 4, box.map(\.yMM).reduce(0, +) / 4)
        }
        let a = centre(auto.neckBox), b = centre(moved.neckBox)
        let d = (b.xMM - a.xMM) * auto.neckDirection.xMM + (b.yMM - a.yMM) * auto.neckDirection.yMM
        let fromHead = hypot(b.xMM - auto.headCentre.xMM, b.yMM - auto.headCentre.yMM) - hypot(a.xMM - auto.headCentre.xMM, a.yMM - auto.headCentre.yMM)
        print(String(format: "%@ neck box +4 mm: moved %.2f mm along the axis, %.2f farther from the head; neck BMD %.4f → %.4f, area %.2f → %.2f",
                     side.rawValue, d, fromHead, auto.roi("neck")?.bmdGCm2 ?? .nan, moved.roi("neck")?.bmdGCm2 ?? .nan,
                     auto.roi("neck")?.areaCm2 ?? .nan, moved.roi("neck")?.areaCm2 ?? .nan))
        #expect(abs(d - 4) < 1e-6 && fromHead > 3)
        #expect(moved.roi("neck")?.bmdGCm2 != auto.roi("neck")?.bmdGCm2)
        #expect(moved.headCentre == auto.headCentre && moved.neckWaist == auto.neckWaist)
        // Back by the same amount is the automatic box.
        let back = try HipAnalysis.measure(scan, correction: ROICorrection(neckBoxShiftMM: 0))
        #expect(back.roi("neck") == auto.roi("neck"))
    }

    @Test func correctionsThatDoNotFitTheScanAreRefused() async throws {
        let spine = try await SharedScanner.shared.scan(PatientSpec(), noise: 1)
        let hip = try await SharedScanner.shared.hip(PatientSpec(), .left, noise: 11)
        let auto = try SpineAnalysis.measure(spine)
        let lines = auto.vertebrae.map(\.upper.yMM) + [auto.vertebrae.last?.lower.yMM ?? 0]
        let badSpine: [(ROICorrection, String)] = [
            (ROICorrection(discLinesMM: Array(lines.prefix(2))), "at least three"),
            (ROICorrection(discLinesMM: lines.reversed()), "top to bottom"),
            (ROICorrection(discLinesMM: [lines[0], lines[0] + 3, lines[2]]), "top to bottom"),
            (ROICorrection(discLinesMM: lines + [.nan]), "not a number"),
            (ROICorrection(discLinesMM: [lines[0] - 500] + lines), "outside the scan"),
            (ROICorrection(l4YMM: 0), "no vertebra"),
            (ROICorrection(l4YMM: .infinity), "not a number"),
            (ROICorrection(neckBoxShiftMM: 2), "hip scan"),
        ]
        for (c, says) in badSpine {
            do { _ = try SpineAnalysis.measure(spine, correction: c); Issue.record("applied: \(c)") } catch {
                #expect(error.description.contains(says), "\(c): \(error)")
            }
        }
        for (c, says) in [(ROICorrection(neckBoxShiftMM: 16), "at most 15 mm"), (ROICorrection(neckBoxShiftMM: -.infinity), "at most"),
                          (ROICorrection(discLinesMM: lines), "on the AP spine"), (ROICorrection(l4YMM: 700), "on the AP spine")] {
            do { _ = try HipAnalysis.measure(hip, correction: c); Issue.record("applied: \(c)") } catch {
                #expect(error.description.contains(says), "\(c): \(error)")
            }
        }
        // Through the one entry point, with the correction on the result.
        let corrected = try SiteAnalysis.analyze(hip, patient: nil, correction: ROICorrection(neckBoxShiftMM: 3)).get()
        #expect(corrected.correction == ROICorrection(neckBoxShiftMM: 3))
        #expect(try SiteAnalysis.analyze(hip, patient: nil, correction: ROICorrection()).get().correction == nil)
    }
}

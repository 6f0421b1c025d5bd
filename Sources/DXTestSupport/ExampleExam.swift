import DXAcquisition
import DXAnalysis
import DXClinical
import DXDecomposition
import DXProtocol
import DXSimulator
import Foundation

/// An exam as the report and the DICOM objects see it, from real analyses of simulated
/// scans: an AP spine (an osteophyte at L4), a left hip, a right hip skipped for metal, a
/// lateral spine with a grade 2 wedge at T12 and a grade 2 crush at L1, a follow-up.
public enum ExampleExam {
    public static func results() throws -> (ExamResults, [String: DecomposedScan]) {
        var scanner = TableScanner(seed: 11)
        let config = ScanConfiguration(scanID: 1, mode: .dual, xUm: 200_000, yStartUm: 580_000, lineCount: 220, lineStepUm: 1000,
                                       linePeriodUs: 1_000_000, tubeCurrentUA: 400, linesPerFrame: 1)
        // The side view as the page was drawn for (bodies and ribs): this tests the page, the
        // VFA study tests the reading (with the shoulder blades over T4–T8 this patient's
        // expected height comes from fewer bodies and L1's crush reads grade 1 at 25 %).
        var spec = PatientVariety.patient(seed: 10, lateralAnatomy: .bodiesAndRibs)
        spec.spine.vertebrae[5].osteophyte = .left  // L4
        let scan = try scanner.decompose(PatientScene(spec), config, region: "ap_spine")
        let patient = PatientContext(sex: .female, ageYears: 67.4)
        let spine = try SiteAnalysis.analyze(scan, patient: patient).get()
        let dose = ScanDose(scans: 5, exposureMs: 221_700, dapMGyCm2: 6.41)
        let hipConfig = ScanConfiguration(scanID: 2, mode: .dual, xUm: 300_000, yStartUm: 860_000, lineCount: 150, lineStepUm: 1000,
                                          linePeriodUs: 1_200_000, tubeCurrentUA: 333, linesPerFrame: 1)
        let hipScan = try scanner.decompose(PatientScene(spec), hipConfig, region: "left_hip")
        let hip = try SiteAnalysis.analyze(hipScan, patient: patient).get()
        // The lateral spine of the same patient with a grade 2 wedge at T12 and a grade 2 crush
        // at L1.
        var lateralSpec = spec
        if let t12 = lateralSpec.thoracolumbar.firstIndex(where: { $0.name == "T12" }) {
            lateralSpec.thoracolumbar[t12] = lateralSpec.thoracolumbar[t12].fractured(.wedge, grade: 2)
            lateralSpec.thoracolumbar[t12 + 1] = lateralSpec.thoracolumbar[t12 + 1].fractured(.crush, grade: 2)
        }
        let lateralConfig = ScanConfiguration(scanID: 3, mode: .dual, xUm: 185_000, yStartUm: 320_000, lineCount: 380, lineStepUm: 1000,
                                              linePeriodUs: 500_000, tubeCurrentUA: 800, linesPerFrame: 1)
        let lateralScan = try scanner.decompose(PatientScene(lateralSpec), lateralConfig, region: "lateral_spine", armAngleX10: 900)
        let lateral = try SiteAnalysis.analyze(lateralScan, patient: patient).get()
        let sites = [
            ExamResults.Site(site: "ap_spine", title: "AP lumbar spine", attempt: 1, status: "completed", capture: nil, result: spine, note: nil, dose: dose),
            ExamResults.Site(site: "left_hip", title: "left hip", attempt: 1, status: "completed", capture: nil, result: hip, note: nil,
                             dose: ScanDose(scans: 5, exposureMs: 181_940, dapMGyCm2: 2.24)),
            ExamResults.Site(site: "right_hip", title: "right hip", attempt: 1, status: "skipped", capture: nil, result: nil,
                             note: "not scanned: metal in the right hip (checklist)", dose: ScanDose(scans: 0, exposureMs: 0, dapMGyCm2: 0)),
            ExamResults.Site(site: "lateral_spine", title: "lateral spine (VFA)", attempt: 1, status: "completed", capture: nil, result: lateral,
                             note: nil, dose: ScanDose(scans: 4, exposureMs: 190_000, dapMGyCm2: 1.9)),
        ]
        var r = ExamResults(examID: 7, state: .completed,
                            patient: .init(id: "P-0042", name: "Ada Example", sex: "female", birthDate: "1959-07-01", ageYears: 67.4),
                            examDate: "2026-12-02", sites: sites,
                            diagnosis: ExamResults.diagnose(sites, patient: patient),
                            dose: ScanDose(scans: 10, exposureMs: 403_640, dapMGyCm2: 8.65), reference: "NHANES test", analysisVersion: AnalysisVersion.current)
        r.vfaIndication = VFAIndication.evaluate(tScore: r.diagnosis.tScore, .init(sex: .female, ageYears: 67.4, heightLossCm: 4.5))
        // A follow-up as FollowUp.compare makes it (tested in DXAcquisitionTests): the spine 5 %
        // lower than two years ago against an LSC of 0.035, the total hip within it, the neck
        // with a larger bone area, and no precision for the neck.
        func change(_ site: String, _ roi: String, priorFactor: Double, lsc: Double?, area: Double, notes: [String] = []) -> FollowUp.ROIChange? {
            guard let now = (site == "ap_spine" ? spine : hip).roi(roi)?.bmdGCm2 else { return nil }
            let prior = now * priorFactor
            return FollowUp.ROIChange(site: site, roi: roi, priorBMDGCm2: prior, bmdGCm2: now, changeGCm2: now - prior, changePercent: (now / prior - 1) * 100,
                                      lscGCm2: lsc, significant: lsc.map { abs(now - prior) >= $0 }, areaChangePercent: area, areaFlag: abs(area) > 2, notes: notes)
        }
        r.followUp = FollowUp(prior: .init(examID: 3, examDate: "2024-11-28"),
                              changes: [change("ap_spine", "L1-L4", priorFactor: 1.053, lsc: 0.035, area: 0.4),
                                        change("left_hip", "total_hip", priorFactor: 1.012, lsc: 0.028, area: -0.8),
                                        change("left_hip", "neck", priorFactor: 1.02, lsc: nil, area: 2.6,
                                               notes: ["no precision study for neck on this device (dexa precision): significance not judged",
                                                       "the bone area changed by +2.6 %: check positioning and the ROIs before reading the change"])].compactMap { $0 },
                              notes: [])
        return (r, ["ap_spine": scan, "left_hip": hipScan, "lateral_spine": lateralScan])
    }
}

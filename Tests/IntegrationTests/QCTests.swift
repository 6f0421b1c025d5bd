import DXClinical
import DXControl
import DXProtocol
import DXSimulator
import DXTestSupport
import Foundation
import Testing

/// Phantom QC through the real daemon and socket (docs/qc.md): the QC scan of the simulator's
/// ESP phantom measured with the unit's calibration, the baseline filling, a judged result,
/// the history, a service reset; and the scans that must add nothing.
@Suite("Phantom QC through the daemon", .serialized)
struct QCTests {
    @Test func theBaselineFillsAndAResultIsJudged() async throws {
        let dir = TemporaryDirectory()
        let (calPhantom, espPhantom) = try AnalyzeTests.writePhantoms(dir)
        let daemon = try await DaemonProcess(in: dir, device: "simulator", timeScale: 50,
                                             config: ["simulator_phantom = bench", "qc_baseline_scans = 10"])
        try await daemon.waitForDevice()

        // Nothing yet: the baseline is incomplete and QC is due.
        let empty = try await daemon.call(.qcStatus, QCStatusParams())
        #expect(empty.condition == .baselineIncomplete && empty.due && empty.scans == 0 && empty.baselineScans == 10)
        // Without a calibration there is no QC, and nothing is added.
        do {
            _ = try await daemon.call(.qcRun, QCRunParams(phantom: espPhantom))
            Issue.record("a QC scan ran without a calibration")
        } catch let e as RPCError {
            #expect(e.code == RPCError.notCalibratedCode, "\(e)")
        }
        _ = try await daemon.call("service.calibrate", .object(["phantom": .string(calPhantom)]))

        // Bad input adds nothing: a phantom without ROIs (refused before anything moves), and
        // ROIs that do not lie over the phantom's bone (the wrong phantom, or off-centre: 30 mm
        // to the side, over its soft tissue only).
        do {
            _ = try await daemon.call(.qcRun, QCRunParams(phantom: calPhantom))
            Issue.record("a phantom without ROIs was scanned for QC")
        } catch let e as RPCError {
            #expect(e.code == RPCError.invalidParamsCode && e.message.contains("has no ROIs"), "\(e)")
        }
        let shifted = dir.file("esp-off-centre.json")
        let moved = (StandardPhantoms.esp.rois ?? []).map { Phantom.ROI(name: $0.name, xUm: $0.xUm.map { $0 + 30_000 }, yUm: $0.yUm) }
        try JSONEncoder().encode(Phantom(name: "ESP off-centre", cells: nil, rois: moved)).write(to: URL(fileURLWithPath: shifted))
        do {
            _ = try await daemon.call(.qcRun, QCRunParams(phantom: shifted))
            Issue.record("ROIs over soft tissue gave a QC result")
        } catch let e as RPCError {
            #expect(e.code == RPCError.scanFailedCode && e.message.contains("not over the phantom's bone") && e.message.contains("nothing added"), "\(e)")
        }
        #expect(try await daemon.call(.qcStatus, QCStatusParams()).scans == 0)

        // Ten scans set the baseline; each is "baseline" until the tenth completes it.
        var last: QCRunResult?
        for k in 1...10 {
            let r = try await daemon.call(.qcRun, QCRunParams(phantom: espPhantom))
            #expect(r.verdict == .baseline && r.status.scans == k)
            #expect(Set(r.bmdGCm2.keys) == ["L1", "L2", "L3"])
            for (name, nominal) in [("L1", 0.5), ("L2", 1.0), ("L3", 1.5)] { #expect(abs((r.bmdGCm2[name] ?? 0) / nominal - 1) < 0.02, "\(name): \(r.bmdGCm2)") }
            last = r
        }
        #expect(last?.status.condition == .inControl && last?.status.due == false, "\(String(describing: last?.status))")
        let baseline = try #require(last?.status.baseline)
        for (name, region) in baseline.regions.sorted(by: { $0.key < $1.key }) {
            print(String(format: "QC baseline %@: %.4f ± %.4f g/cm² (CV %.2f %%)", name, region.meanGCm2, region.sdGCm2, region.sdGCm2 / region.meanGCm2 * 100))
        }
        // The eleventh is judged against it.
        let judged = try await daemon.call(.qcRun, QCRunParams(phantom: espPhantom))
        #expect(judged.verdict == .pass && judged.status.condition == .inControl, "\(judged)")
        let history = try await daemon.call(.qcStatus, QCStatusParams(history: true))
        #expect(history.points?.count == 11 && history.points?.last?.deviationPercent.count == 3)
        // Audited: every QC scan, allowed, and the refusals.
        let audited = daemon.auditEntries.filter { $0["method"]?.stringValue == "qc.run" }
        #expect(audited.filter { $0["decision"]?.stringValue == "allowed" }.count >= 12, "\(audited.count)")

        // The CLI reads the same state.
        let text = try await daemon.cli(["qc", "status"])
        #expect(text.status == 0 && text.out.contains("in control") && text.out.contains("baseline (10 scans)"), "\(text.out) \(text.err)")

        // A service reset starts a new history: the baseline fills again.
        do {
            _ = try await daemon.call(.qcReset, QCResetParams(reason: "  "))
            Issue.record("a reset without a reason was accepted")
        } catch let e as RPCError { #expect(e.code == RPCError.invalidParamsCode) }
        let reset = try await daemon.call(.qcReset, QCResetParams(reason: "detector module replaced"))
        #expect(reset.condition == .baselineIncomplete && reset.scans == 0 && reset.reset?.reason == "detector module replaced")
        #expect(daemon.auditEntries.contains { $0["method"]?.stringValue == "qc.reset" && $0["decision"]?.stringValue == "allowed" })
    }
}

import DXAcquisition
@testable import DXDecomposition
import DXProtocol
import Foundation
import Testing

/// The QC scan's plan and what its result must be before it can enter a history.
@Suite("QC scan")
struct QCRunTests {
    static let info = DeviceInfo(model: "DX-1", serial: "DX1-000123", fwMajor: 1, fwMinor: 4, fwPatch: 2, channels: 144, pitchUm: 1000,
                                 energyLowKeV: 40, energyHighKeV: 70, maxLineRateHz: 100, travelXUm: 400_000, travelYUm: 2_000_000,
                                 airZoneYUm: 1_900_000, watchdogMs: 1000)
    static let esp = Phantom(name: "ESP", cells: nil, rois: [
        Phantom.ROI(name: "L1", xUm: [190_000, 210_000], yUm: [525_000, 555_000]),
        Phantom.ROI(name: "L2", xUm: [190_000, 210_000], yUm: [585_000, 615_000]),
        Phantom.ROI(name: "L3", xUm: [190_000, 210_000], yUm: [645_000, 675_000]),
    ])

    @Test func thePassCoversTheROIsWithMargins() throws {
        let plans = try QCRun.plans(phantom: Self.esp, info: Self.info)
        #expect(plans.map(\.role) == [.dark, .air, .qc])
        let pass = try #require(plans.last)
        #expect(pass.xUm == 200_000 && pass.yStartUm == 505_000 && pass.lineStepUm == 500 && pass.lineCount == 380)
        #expect(pass.linePeriodUs == 40_000 && pass.tubeCurrentUA == 3000)
    }

    @Test func phantomsThatCannotMakeAQCScanAreRefused() {
        #expect(throws: QCRun.Failure.self) { try QCRun.plans(phantom: Phantom(name: "none", cells: nil, rois: []), info: Self.info) }
        #expect(throws: QCRun.Failure.self) {
            try QCRun.plans(phantom: Phantom(name: "twice", cells: nil, rois: [Self.esp.rois![0], Self.esp.rois![0]]), info: Self.info)
        }
        #expect(throws: QCRun.Failure.self) {
            try QCRun.plans(phantom: Phantom(name: "inverted", cells: nil, rois: [Phantom.ROI(name: "L1", xUm: [210_000, 190_000], yUm: [1, 2])]), info: Self.info)
        }
        #expect(throws: QCRun.Failure.self) {
            try QCRun.plans(phantom: Phantom(name: "off the table", cells: nil, rois: [Phantom.ROI(name: "L1", xUm: [0, 10], yUm: [5_000, 6_000])]), info: Self.info)
        }
    }

    static func live(_ rois: [ROIResult], complete: Bool = true, missing: Int = 0) -> LiveResult {
        LiveResult(lines: 380 - missing, rois: rois, motion: [], bonePixels: 0, boneAreaCm2: 0, meanBoneBMD: nil, complete: complete,
                   missingLines: missing, missingLineRanges: [], stages: [], latencyP50: 0, latencyP99: 0)
    }

    static func roi(_ name: String, _ bmd: Double, complete: Bool = true) -> ROIResult {
        ROIResult(name: name, bmdGcm2: bmd, areaCm2: 6, bmcG: 6 * bmd, pixels: 600, unmeasuredPixels: complete ? 0 : 30)
    }

    @Test func onlyACompleteResultOverBoneCounts() throws {
        let good = [Self.roi("L1", 0.5), Self.roi("L2", 1.0), Self.roi("L3", 1.5)]
        #expect(try QCRun.measurement(Self.live(good), phantom: Self.esp) == ["L1": 0.5, "L2": 1.0, "L3": 1.5])
        // Stopped half-way: lines missing.
        #expect(throws: QCRun.Failure.self) { try QCRun.measurement(Self.live(good, complete: false, missing: 190), phantom: Self.esp) }
        // An ROI incomplete, an ROI over soft tissue, an ROI missing.
        #expect(throws: QCRun.Failure.self) { try QCRun.measurement(Self.live([Self.roi("L1", 0.5, complete: false)] + good.dropFirst()), phantom: Self.esp) }
        #expect(throws: QCRun.Failure.self) { try QCRun.measurement(Self.live([Self.roi("L1", 0.02)] + good.dropFirst()), phantom: Self.esp) }
        #expect(throws: QCRun.Failure.self) { try QCRun.measurement(Self.live(Array(good.dropFirst())), phantom: Self.esp) }
    }
}

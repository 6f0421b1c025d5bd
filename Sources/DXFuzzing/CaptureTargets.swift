import DXAnalysis
import DXDecomposition
import DXProtocol
import Foundation

/// A `.dxcap` file as `dexa analyze` meets it.
enum CaptureTargets {
    static func capture(_ bytes: [UInt8]) -> FuzzOutcome {
        let contents: CaptureFormat.Contents
        do { contents = try CaptureFormat.parse(bytes) } catch { return .refused(error.description) }
        let scans = CaptureReader.scans(in: contents)
        // A capture with a calibration phantom is both the calibration and the measured scan
        // (a calibration capture analysed against itself, as a service engineer checks a fit);
        // any other is measured against the checked-in calibration of the simulated unit
        // (Tests/Fixtures/calibration.json). No seed is a calibration capture (one is
        // megabytes), so the fit is reached only as far as mutations of a header get it.
        let read = (contents.header, scans)
        let analysis: CaptureAnalysis
        do {
            if let calibration = fixedCalibration, contents.header.phantom?.cells?.isEmpty ?? true {
                analysis = try CaptureAnalysis.run(calibration: calibration, calibrationPath: "calibration.json", scan: read,
                                                   scanPath: "fuzz.dxcap", image: true, force: true)
            } else {
                analysis = try CaptureAnalysis.run(calibration: read, calibrationPath: "fuzz.dxcap", scan: read, scanPath: "fuzz.dxcap",
                                                   image: true, force: true)
            }
        } catch {
            return .accepted("\(scans.count) scans, \(contents.records.count) records; not analysed: \(error.description)")
        }
        _ = try? analysis.image?.png(rois: analysis.roiDefinitions)
        _ = AnalysisReport(analysis)
        if analysis.role == .patient, let scan = analysis.decomposed {
            _ = SiteAnalysis.analyze(scan, patient: PatientContext(sex: .female, ageYears: 65))
        }
        return .accepted("\(scans.count) scans analysed: \(analysis.lines) lines, \(analysis.rois.count) ROIs")
    }
}

extension CaptureTargets {
    /// The simulated unit's calibration, checked in beside the tests; read once.
    static let fixedCalibration: Calibration? = {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Tests/Fixtures/calibration.json").path
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        return try? JSONDecoder().decode(Calibration.self, from: data)
    }()
}

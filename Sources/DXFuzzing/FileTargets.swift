import DXAcquisition
import DXClinical
import DXDaemon
import DXDecomposition
import DXProtocol
import DXSimulator
import Foundation

/// Files a site or a service engineer writes, and files the daemon wrote and reads back.
enum FileTargets {
    static func config(_ bytes: [UInt8]) -> FuzzOutcome {
        // A config file that is not UTF-8 is refused where the daemon reads it (String(contentsOfFile:)).
        guard let text = String(validating: bytes, as: UTF8.self) else { return .refused("not UTF-8") }
        var configuration = DaemonConfiguration()
        do {
            try configuration.apply(fileText: text)
        } catch {
            return .refused(error.description)
        }
        return .accepted("device \(configuration.device), protocol \(configuration.examProtocol ?? "standard")")
    }

    static func examProtocol(_ bytes: [UInt8]) -> FuzzOutcome {
        do {
            let p = try ExamProtocol.parse(Data(bytes), path: "fuzz.json")
            return .accepted("\(p.sites.count) sites")
        } catch {
            return .refused(error.description)
        }
    }

    static func phantom(_ bytes: [UInt8]) -> FuzzOutcome {
        let phantom: Phantom
        do { phantom = try JSONDecoder().decode(Phantom.self, from: Data(bytes)) } catch { return .refused("\(error)") }
        // What reads a phantom's cells and ROIs: the calibration procedure's passes and the
        // bone image's ROI outlines.
        _ = CalibrationProcedure(phantom: phantom, travelXUm: SimulatorConfiguration.standardInfo.travelXUm)
        let image = BoneImage(geometry: ScanGeometry(channels: 16, pitchUm: 1000), lineStepUm: 1000)
        _ = try? image.png(rois: phantom.rois ?? [])
        return .accepted("\(phantom.cells?.count ?? 0) cells, \(phantom.rois?.count ?? 0) ROIs")
    }

    static func reference(_ bytes: [UInt8]) -> FuzzOutcome {
        do {
            let r = try AgeMatchedReference.parse(Data(bytes), path: "fuzz.json")
            return .accepted(r.name)
        } catch {
            return .refused(error.description)
        }
    }

    /// As `CalibrationStore.load` reads it: decoded, its version and shape checked, judged.
    static func calibration(_ bytes: [UInt8]) -> FuzzOutcome {
        let calibration: Calibration
        do { calibration = try JSONDecoder().decode(Calibration.self, from: Data(bytes)) } catch { return .refused("\(error)") }
        guard calibration.version == Calibration.formatVersion else { return .refused("version \(calibration.version)") }
        guard calibration.isWellFormed else { return .refused("not well formed") }
        let verdict = calibration.verdict
        _ = calibration.unitProblem(for: SimulatorConfiguration.standardInfo)
        _ = calibration.channelResponse?.fits(channels: Int(SimulatorConfiguration.standardInfo.channels))
        return .accepted(verdict.description)
    }
}

import DXAcquisition
import DXClinical
import DXControl
import DXDaemon
import DXDecomposition
import DXDicom
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

    static func dicomConfig(_ bytes: [UInt8]) -> FuzzOutcome {
        guard let text = String(validating: bytes, as: UTF8.self) else { return .refused("not UTF-8") }
        do {
            let c = try DicomConfiguration.parse(text)
            return .accepted("AE \(c.aeTitle), storage \(c.storage?.description ?? "none"), worklist \(c.worklist?.description ?? "none")")
        } catch {
            return .refused(error.description)
        }
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
        guard Calibration.readableVersions.contains(calibration.version) else { return .refused("version \(calibration.version)") }
        guard calibration.isWellFormed else { return .refused("not well formed") }
        let verdict = calibration.verdict
        _ = calibration.unitProblem(for: SimulatorConfiguration.standardInfo)
        _ = calibration.channelResponse?.fits(channels: Int(SimulatorConfiguration.standardInfo.channels))
        return .accepted(verdict.description)
    }
}

extension FileTargets {
    /// A QC history saved with `dexa qc history --json`, as `dexa qc cross-calibration --before
    /// A --after B` reads it (`QCText.measurements`): decoded, its results compared with
    /// themselves (the first half before, the second after), and judged by the unit's rules
    /// as the daemon judges a history.
    static func qcHistory(_ bytes: [UInt8]) -> FuzzOutcome {
        let status: QCStatusResult
        do { status = try JSONDecoder().decode(QCStatusResult.self, from: Data(bytes)) } catch { return .refused("\(error)") }
        guard let results = status.results, !results.isEmpty else { return .refused("no QC results") }
        let half = results.count / 2
        let cross: String
        do {
            let c = try QualityControl.crossCalibration(before: Array(results.prefix(half)), after: Array(results.suffix(from: half)),
                                                        scans: max(2, min(10, half)))
            cross = "cross-calibration \(c.passes ? "passed" : "failed")"
        } catch {
            cross = "no cross-calibration: \(error)"
        }
        let state = QualityControl.evaluate(results, rules: QualityControl.Rules())
        return .accepted("\(results.count) results, \(state.condition); \(cross)")
    }

    /// What `dexa-sim --phantom FILE` and its `phantom FILE` command lay on the table: a
    /// patient (the `patient` object laid over the default body) or an ICD §8 phantom; then
    /// what the beam sees across the table from the front and from the side.
    static func scene(_ bytes: [UInt8]) -> FuzzOutcome {
        let scene: any Scene
        do { scene = try StandardPhantoms.scene(json: Data(bytes), name: "fuzz.json") } catch { return .refused("\(error)") }
        var sampled = 0
        for angle in [Int16(0), 900] {
            let view = scene.projection(armAngleX10: angle)
            for x in stride(from: 0, through: 600_000, by: 40_000) {
                for y in stride(from: 0, through: 2_000_000, by: 100_000) {
                    _ = view.composition(xUm: Int32(x), yUm: Int32(y))
                    sampled += 1
                }
            }
        }
        return .accepted("\(type(of: scene)): \(sampled) points seen")
    }

    /// A `.dxcap` as `dexa capture show` summarises it.
    static func captureSummary(_ bytes: [UInt8]) -> FuzzOutcome {
        do {
            let s = try CaptureSummary.summary(of: bytes, path: "fuzz.dxcap")
            return .accepted("\(s.scans.count) scans, \(s.records) records\(s.truncatedTail ? ", tail cut" : "")")
        } catch {
            return .refused(error.description)
        }
    }
}

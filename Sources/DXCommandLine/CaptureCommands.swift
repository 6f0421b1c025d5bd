import ArgumentParser
import DXAcquisition
import DXAnalysis
import DXClinical
import DXControl
import DXDecomposition
import DXProtocol
import DXReport
import Foundation

/// Offline commands: no daemon, only files. Bad input is one line on standard error and exit
/// status 2 (ICD §9; `ExitStatus.offlineFailure`).
enum Offline {
    static func fail(_ command: String, _ why: String) -> ExitCode {
        FileHandle.standardError.write(Data("dexa \(command): \(why)\n".utf8))
        return ExitCode(ExitStatus.offlineFailure.rawValue)
    }

    /// The ROI table; an ROI that lost lines or pixels is marked and explained under it.
    static func printROIs(_ rois: [ROIResult]) {
        guard !rois.isEmpty else { return }
        print("ROI        BMD g/cm²   area cm²   BMC g   low-count px")
        for r in rois {
            let mark = r.complete ? "" : "  INCOMPLETE"
            print(r.name.padding(toLength: 10, withPad: " ", startingAt: 0)
                  + String(format: " %9.4f  %9.2f  %7.3f  %6d", r.bmdGcm2, r.areaCm2, r.bmcG, r.lowCountPixels) + mark)
        }
        for r in rois where !r.complete {
            var why: [String] = []
            if r.missingLines > 0 { why.append("\(r.missingLines) of its lines missing") }
            if r.unmeasuredPixels > 0 { why.append("\(r.unmeasuredPixels) pixels without a number (saturated or no photons)") }
            if r.pixels == 0 { why.append("no measured pixel") }
            print("\(r.name): BMD over part of the region only: \(why.joined(separator: ", "))")
        }
        let low = rois.reduce(0) { $0 + $1.lowCountPixels }
        if low > 0 { print("low-count pixels (under 25 counts above dark) are measured with the low-count correction and included") }
    }
}

/// `dexa analyze` (ICD §9): offline, no daemon.
struct Analyze: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Analyse a capture offline against a calibration capture (ICD §9).")
    @Option(help: "Capture holding a dark, an air and a calibration scan.") var calibration: String
    @Argument(help: "Capture holding a dark, an air and the scan to measure.") var scan: String
    @OptionGroup var output: OutputOptions
    @Option(help: "Also write the bone mineral image, with the ROIs drawn, to this PNG file.") var image: String?
    @Flag(help: "Analyse even with a calibration the acceptance rule refuses, or one from another unit (the output says so).") var force = false
    @Option(help: "Also write the decomposed scan with its geometry (.dxdec, docs/analysis-data.md) to this file.") var decomposed: String?
    @Option(help: "The patient's sex for the scores (female or male), over the capture's.") var sex: String?
    @Option(help: "The patient's age in years at the scan, over the capture's birth date.") var age: Double?
    @Option(help: "An age- and sex-matched reference for Z-scores (JSON, docs/clinical-references.md).") var zReference: String?

    /// Who was scanned: the options, else the capture header's sex and birth date on the day
    /// the capture was made.
    func patient(_ header: CaptureHeader) throws -> PatientContext? {
        if let sex, Applicability.Sex(rawValue: sex) == nil { throw Offline.fail("analyze", "--sex: female or male, not \(sex)") }
        if let age, !(age >= 0 && age <= 130) { throw Offline.fail("analyze", "--age: 0 to 130 years, not \(age)") }
        let stored = PatientContext(capture: header)
        guard let s = sex.flatMap(Applicability.Sex.init(rawValue:)) ?? stored?.sex, let a = age ?? stored?.ageYears else { return nil }
        return PatientContext(sex: s, ageYears: a)
    }

    func run() async throws {
        let result: CaptureAnalysis
        do {
            result = try CaptureAnalysis.run(calibrationPath: calibration, scanPath: scan, image: image != nil, force: force, decomposed: decomposed != nil)
        } catch {
            throw Offline.fail("analyze", error.description)
        }
        if let decomposed, let scan = result.decomposed {
            do { try scan.write(to: decomposed) } catch { throw Offline.fail("analyze", error.description) }
        }
        let forcedWhy = (result.verdict.accepted ? [] : [result.verdict.description]) + (result.otherUnit.map { [$0] } ?? [])
        let forcedNote = "FORCED: \(forcedWhy.joined(separator: "; ")); these figures are not fit for a patient"
        if result.forced { FileHandle.standardError.write(Data("dexa analyze: \(forcedNote)\n".utf8)) }
        // A patient scan's image is drawn with its analysis (the report's figure); a phantom's
        // with the phantom's ROIs.
        let patientScan = result.role == .patient ? result.decomposed : nil
        let figure = image != nil ? patientScan.map { SiteAnalysis.analyze($0, patient: nil) } : nil
        var drewSite = false
        if let image, let patientScan, case .success(let r)? = figure {
            do { try ReportRaster.sitePNG(r, scan: patientScan, to: image) } catch { throw Offline.fail("analyze", "cannot write \(image): \(error)") }
            drewSite = true
        } else if let image, let picture = result.image {
            do {
                try Data(try picture.png(rois: result.roiDefinitions)).write(to: URL(fileURLWithPath: image))
            } catch {
                throw Offline.fail("analyze", "cannot write \(image): \(error)")
            }
        }
        if let patientScan {
            let patient = try patient(result.header)
            var reference = ReferenceSet.nhanes
            if let zReference {
                do { reference = reference.with(ageMatched: try AgeMatchedReference.load(path: zReference)) } catch {
                    throw Offline.fail("analyze", "--z-reference: \(error.description)")
                }
            }
            let site = SiteAnalysis.analyze(patientScan, patient: patient, reference: reference)
            if output.json {
                Output.json(PatientScanReport(AnalysisReport(result), region: patientScan.provenance.region, site: site, patient: patient))
                return
            }
            if result.forced { print(forcedNote) }
            switch site {
            case .success(let r): ResultsText.printSite(r)
            case .failure(let why): print("no automatic analysis: \(why)")
            }
            if patient == nil { print("no T-scores: the patient's sex and age are not known (--sex, --age)") }
        } else {
            if output.json {
                Output.json(AnalysisReport(result))
                return
            }
            if result.forced { print(forcedNote) }
            Offline.printROIs(result.rois)
        }
        if result.bonePixels > 0 {
            print(String(format: "bone: %.2f cm², mean %.4f g/cm²", result.boneAreaCm2, result.meanBoneBMD))
        }
        print("lines: \(result.ledger.summary)")
        print("calibration: \(result.verdict.description)")
        if let f = result.calibration.lowWindowMixing {
            print(String(format: "calibration: %.1f %% of the low window's air counts are high-energy photons, taken out of every pixel", f * 100))
        }
        print("calibration: each channel's map onto the detector's mean: \(result.calibration.channelMap)")
        if let spectra = result.calibration.spectra {
            print(String(format: "calibration: the windows as spectra fit the cells to %.2fσ and %.2fσ; ", spectra.residualLow, spectra.residualHigh)
                  + (result.calibration.extensionSetAside == nil ? "the models are continued by them beyond the phantom's cells"
                     : String(format: "the models are the cells' alone (continued, they fit the cells to %.4f g/cm², beyond the rule)", result.calibration.extensionSetAside ?? .nan)))
        }
        if let inferred = result.calibration.inferredChannels, !inferred.isEmpty {
            print("calibration: \(inferred.count) channels saw no calibration cell (a capture made before 2026-12-06 steps by whole cell widths); their response is their neighbours': recalibrate")
        }
        if result.motion.isEmpty {
            print("motion: none found (the patient lay still)")
        } else {
            for m in result.motion { print(String(format: "motion: %+.1f mm from line %d", m.shiftMM, m.line)) }
        }
        if let image {
            print(drewSite ? "image: \(image) (the site's image with its analysis drawn as in the report; the lateral spine sharpened for reading)"
                : "image: \(image) (bone mineral 0 black to 2.0 g/cm² white, flagged pixels red, ROIs yellow)")
        }
    }
}

/// `dexa capture`: the recorded acquisitions, for service engineers.
struct CaptureCommands: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "capture", abstract: "List, inspect, export and replay recorded acquisitions (.dxcap, ICD §7).",
        subcommands: [List.self, Show.self, Export.self, Replay.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The captures in a directory, newest first.")
        @Option(help: "Where the daemon records (its state directory's captures/).") var directory = "/var/lib/dexa/captures"
        @OptionGroup var output: OutputOptions

        func run() async throws {
            let names: [String]
            do { names = try FileManager.default.contentsOfDirectory(atPath: directory) } catch {
                throw Offline.fail("capture list", "cannot read \(directory): \(error.localizedDescription)")
            }
            let summaries: [Result<CaptureSummary, AnalysisError>] = names.filter { $0.hasSuffix(".dxcap") }.sorted(by: >).map { name in
                let path = directory + "/" + name
                return Result { () throws(AnalysisError) -> CaptureSummary in try CaptureSummary.read(path: path) }
            }
            if output.json {
                Output.json(summaries.map(CaptureListItem.init))
                return
            }
            for s in summaries {
                switch s {
                case .success(let c):
                    let scans = c.scans.map { "\($0.role)\($0.region.map { ":" + $0 } ?? "") \($0.lines)" }.joined(separator: ", ")
                    print("\((c.path as NSString).lastPathComponent)  \(c.bytes / 1024) KiB  \(c.serial)  \(scans)\(c.truncatedTail ? "  (cut short)" : "")")
                case .failure(let e):
                    print("unreadable: \(e.description)")
                }
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One capture: device, time, phantom and each scan's configuration and lines.")
        @Argument(help: "The capture file.") var path: String
        @OptionGroup var output: OutputOptions

        func run() async throws {
            let c: CaptureSummary
            do { c = try CaptureSummary.read(path: path) } catch { throw Offline.fail("capture show", error.description) }
            if output.json {
                Output.json(c)
                return
            }
            print("\(c.path): \(c.bytes) bytes, \(c.records) records\(c.truncatedTail ? ", last record cut short (ignored)" : "")")
            print("device \(c.serial) firmware \(c.firmware), created \(c.created)" + (c.phantom.map { ", phantom \"\($0)\"" } ?? ""))
            for s in c.scans {
                var line = "scan \(s.scanID) \(s.role)\(s.region.map { " (\($0))" } ?? "")"
                if let mode = s.mode, let planned = s.plannedLines {
                    line += ": \(mode), \(s.lines) of \(planned) lines"
                    if let p = s.linePeriodUs, let i = s.tubeCurrentUA, let st = s.lineStepUm {
                        line += String(format: ", %.1f ms at %.2f mA, step %.2f mm", Double(p) / 1000, Double(i) / 1000, Double(st) / 1000)
                    }
                } else {
                    line += ": \(s.lines) lines (no CONFIGURE_SCAN recorded)"
                }
                if s.missingLines > 0 { line += ", \(s.missingLines) missing" }
                print(line)
            }
        }
    }

    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "One scan's raw lines as CSV: line, y_um, x_um, t_us, flags, then low and high per channel.")
        @Argument(help: "The capture file.") var path: String
        @Option(help: "Scan id (default: the last scan).") var scan: UInt32?
        @Option(help: "Output file (default: standard output).") var output: String?

        func run() async throws {
            guard let data = FileManager.default.contents(atPath: path) else { throw Offline.fail("capture export", "\(path): cannot read the file") }
            let contents: CaptureFormat.Contents
            do { contents = try CaptureFormat.parse(Array(data)) } catch { throw Offline.fail("capture export", "\(path): \(error.description)") }
            let scans = CaptureReader.scans(in: contents)
            guard let chosen = scan.map({ id in scans.first { $0.scan.scanID == id } }) ?? scans.last else {
                throw Offline.fail("capture export", "\(path) holds no scan \(scan.map(String.init) ?? "")")
            }
            let channels = chosen.lines.first?.channels ?? Int(contents.header.device.channels)
            var text = "line,y_um,x_um,t_us,flags," + (0..<channels).map { "low\($0),high\($0)" }.joined(separator: ",") + "\n"
            for l in chosen.lines {
                text += "\(l.index),\(l.yUm),\(l.xUm),\(l.tUs),\(l.flags.rawValue),"
                text += l.samples.map(String.init).joined(separator: ",") + "\n"
            }
            if let output {
                do { try Data(text.utf8).write(to: URL(fileURLWithPath: output)) } catch {
                    throw Offline.fail("capture export", "cannot write \(output): \(error.localizedDescription)")
                }
            } else {
                FileHandle.standardOutput.write(Data(text.utf8))
            }
        }
    }

    struct Replay: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Feed a capture through the live pipeline (replay transport, frame decoder, live decomposition).")
        @Argument(help: "Capture holding a dark, an air and the scan to measure.") var path: String
        @Option(help: "Capture holding a dark, an air and a calibration scan.") var calibration: String
        @Option(help: "Pace the replay at this multiple of the recorded speed (default: as fast as possible).") var speed: Double?
        @OptionGroup var output: OutputOptions

        func run() async throws {
            let result: LiveResult
            do {
                let (header, scans) = try CaptureReader.read(path: calibration)
                guard let phantom = header.phantom else { throw AnalysisError.noPhantom(calibration, "cells") }
                let geometry = ScanGeometry(channels: Int(header.device.channels), pitchUm: Int(header.device.pitchUm))
                let cal = try CaptureAnalysis.calibration(from: scans, phantom: phantom, geometry: geometry, source: calibration,
                                                          unit: CalibratedUnit(header.device))
                // The same rules as `dexa analyze` (without its --force): a calibration the
                // acceptance rule refuses, or another unit's, measures nothing here.
                guard cal.verdict.accepted else { throw AnalysisError.calibrationRefused(calibration, cal.verdict) }
                let measured = try CaptureReader.header(path: path)
                if let why = cal.unitProblem(for: measured.device) {
                    throw AnalysisError.otherUnit("\(path) was measured on \(CalibratedUnit(measured.device)): \(why)")
                }
                result = try await CaptureReplay.analyse(path: path, calibration: cal, speed: speed ?? .infinity)
            } catch let e as AnalysisError {
                throw Offline.fail("capture replay", e.description)
            }
            if output.json {
                Output.json(result)
                return
            }
            Offline.printROIs(result.rois)
            print(String(format: "%d lines through the live pipeline; latency p50 %.3f ms, p99 %.3f ms; %@", result.lines,
                         result.latencyP50 * 1e3, result.latencyP99 * 1e3, result.complete ? "complete" : "INCOMPLETE"))
            for s in result.stages {
                print("  stage \(s.name): received \(s.received), processed \(s.processed), dropped \(s.dropped), failed \(s.failed), max queued \(s.maxQueued)")
            }
        }
    }
}

/// One entry of `dexa capture list --json`: the capture's summary, or why it cannot be read.
struct CaptureListItem: Encodable {
    let summary: Result<CaptureSummary, AnalysisError>
    init(_ s: Result<CaptureSummary, AnalysisError>) { summary = s }
    private enum Keys: String, CodingKey { case error }
    func encode(to encoder: any Encoder) throws {
        switch summary {
        case .success(let c): try c.encode(to: encoder)
        case .failure(let e):
            var c = encoder.container(keyedBy: Keys.self)
            try c.encode(e.description, forKey: .error)
        }
    }
}

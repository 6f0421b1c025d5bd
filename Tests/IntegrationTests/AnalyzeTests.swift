import DXControl
import DXProtocol
import DXSimulator
import DXTestSupport
import Foundation
import Testing

/// Calibration on the device and `dexa analyze` on the captures the daemon wrote (ICD §9).
@Suite("Calibrate and analyse", .serialized)
struct AnalyzeTests {
    static func writePhantoms(_ dir: TemporaryDirectory) throws -> (calibration: String, esp: String) {
        let cal = dir.file("calibration-phantom.json"), esp = dir.file("esp-phantom.json")
        try JSONEncoder().encode(StandardPhantoms.calibration).write(to: URL(fileURLWithPath: cal))
        try JSONEncoder().encode(Phantom(name: "ESP", cells: nil, rois: StandardPhantoms.esp.rois)).write(to: URL(fileURLWithPath: esp))
        return (cal, esp)
    }

    @Test func calibrateThenAnalyseTheSpinePhantom() async throws {
        let dir = TemporaryDirectory()
        let (calPhantom, espPhantom) = try Self.writePhantoms(dir)
        let daemon = try await DaemonProcess(in: dir, device: "simulator", timeScale: 50, config: ["simulator_phantom = bench"])
        try await daemon.waitForDevice()

        // Before any calibration a patient scan is refused, and nothing is exposed.
        do {
            _ = try await daemon.call("scan.run", .object(["role": .string("patient"), "region": .string("ap_spine"), "lines": .number(20)]))
            Issue.record("a patient scan ran without a calibration")
        } catch let e as RPCError {
            #expect(e.code == RPCError.notCalibratedCode, "\(e)")
            #expect(e.message.contains("dexa service calibrate"), "\(e.message)")
        }
        let log = try await daemon.call("service.log")
        let firmwareLog = log["text"]?.stringValue ?? ""
        #expect(firmwareLog.contains("X-ray ON") == false, "nothing was exposed")

        let cal = try await daemon.call("service.calibrate", .object(["phantom": .string(calPhantom)]))
        let calCapture = try #require(cal["capture"]?.stringValue)
        #expect(cal["cells"]?.intValue == 75)
        #expect((cal["residual_hydroxyapatite_g_cm2"]?.numberValue ?? 1) < 0.05)
        let stored = try JSONDecoder().decode(JSONValue.self, from: Data(contentsOf: URL(fileURLWithPath: try #require(cal["calibration"]?.stringValue))))
        #expect(stored["source"]?.stringValue == calCapture, "the calibration names the capture it came from")
        #expect(stored["version"]?.intValue == 6, "a calibration without squares is written in format 6")
        #expect(stored["unit"]?["serial"]?.stringValue == "DX1-000123" && stored["unit"]?["model"]?.stringValue == "DX-1", "\(stored["unit"] ?? .null)")

        let scan = try await daemon.call("scan.run", .object([
            "y_start_um": .number(505_000), "lines": .number(380), "line_step_um": .number(500), "line_period_us": .number(40_000),
            "tube_current_ua": .number(3000), "phantom": .string(espPhantom), "with_references": .bool(true), "role": .string("qc"),
        ]))
        #expect(scan["result"]?.stringValue == "completed")
        let espCapture = try #require(scan["capture"]?.stringValue)
        // The live pipeline decomposed the scan as it arrived: its results are in the report.
        let live = try #require(scan["analysis"], "no live analysis: \(scan)")
        #expect(live["complete"] == .bool(true))
        #expect(live["lines"]?.intValue == 380)
        var liveBMD: [String: Double] = [:]
        if case .array(let rois)? = live["rois"] {
            for r in rois { if let n = r["name"]?.stringValue, let b = r["bmd_g_cm2"]?.numberValue { liveBMD[n] = b } }
        }
        if case .array(let stages)? = live["stages"] {
            for s in stages { print("live stage \(s["name"]?.stringValue ?? "?"): \(s)") }
            #expect(stages.allSatisfy { $0["dropped"]?.intValue == 0 })
        }
        print(String(format: "live latency p50 %.3f ms, p99 %.3f ms", (live["latency_p50_s"]?.numberValue ?? 0) * 1e3, (live["latency_p99_s"]?.numberValue ?? 0) * 1e3))

        let r = try await runCLI(["analyze", "--calibration", calCapture, espCapture, "--json"])
        #expect(r.status == 0, "\(r.err)")
        let out = try JSONDecoder().decode(JSONValue.self, from: Data(r.out.utf8))
        guard case .array(let rois)? = out["rois"] else { Issue.record("no rois: \(r.out)"); return }
        #expect(out["motion"] == .array([]))
        let nominal = ["L1": 0.5, "L2": 1.0, "L3": 1.5]
        #expect(rois.count == 3)
        for roi in rois {
            let name = try #require(roi["name"]?.stringValue)
            let bmd = try #require(roi["bmd_g_cm2"]?.numberValue)
            let expected = try #require(nominal[name])
            print(String(format: "dexa analyze %@: %.4f g/cm² (nominal %.1f, %+.2f %%), area %.2f cm², BMC %.3f g", name, bmd, expected,
                         (bmd - expected) / expected * 100, roi["area_cm2"]?.numberValue ?? 0, roi["bmc_g"]?.numberValue ?? 0))
            #expect(abs(bmd - expected) / expected < 0.01)
            #expect(roi["area_cm2"]?.numberValue == 6.0)
            // One code path: the live result and the offline one are the same number.
            #expect(liveBMD[name] == bmd, "live \(liveBMD[name] ?? .nan) vs offline \(bmd)")
        }
        let table = try await runCLI(["analyze", "--calibration", calCapture, espCapture])
        #expect(table.status == 0 && table.out.contains("L2"))

        // The bone image, as a PNG with the ROIs drawn.
        let png = dir.file("esp.png")
        let drawn = try await runCLI(["analyze", "--calibration", calCapture, espCapture, "--image", png])
        #expect(drawn.status == 0, "\(drawn.err)")
        let image = try [UInt8](Data(contentsOf: URL(fileURLWithPath: png)))
        #expect(Array(image.prefix(8)) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        let width = image[16..<20].reduce(0) { $0 << 8 | Int($1) }, height = image[20..<24].reduce(0) { $0 << 8 | Int($1) }
        print("bone image: \(width) × \(height) pixels, \(image.count) bytes")
        #expect(width >= 576 && height >= 380)

        // The same capture replayed through the live pipeline gives the same numbers again.
        let replay = try await runCLI(["capture", "replay", espCapture, "--calibration", calCapture, "--json"])
        #expect(replay.status == 0, "\(replay.err)")
        let replayed = try JSONDecoder().decode(JSONValue.self, from: Data(replay.out.utf8))
        if case .array(let rois)? = replayed["rois"] {
            for r in rois {
                let name = try #require(r["name"]?.stringValue)
                #expect(r["bmd_g_cm2"]?.numberValue == liveBMD[name], "replay \(name): \(r) vs live \(liveBMD[name] ?? .nan)")
            }
        } else {
            Issue.record("replay gave no rois: \(replay.out)")
        }
        #expect(replayed["lines"]?.intValue == 380)

        // The service engineer's view of the captures.
        let captures = (espCapture as NSString).deletingLastPathComponent
        let list = try await runCLI(["capture", "list", "--directory", captures, "--json"])
        #expect(list.status == 0 && list.out.contains(espCapture) && list.out.contains(calCapture), "\(list.out)")
        let show = try await runCLI(["capture", "show", espCapture, "--json"])
        let shown = try JSONDecoder().decode(JSONValue.self, from: Data(show.out.utf8))
        if case .array(let scans)? = shown["scans"] {
            #expect(scans.map { $0["role"]?.stringValue ?? "" } == ["dark", "air", "qc"])
            #expect(scans.map { $0["lines"]?.intValue ?? 0 } == [50, 50, 380])
            #expect(scans.allSatisfy { $0["missing_lines"]?.intValue == 0 })
        } else {
            Issue.record("capture show: \(show.out) \(show.err)")
        }
        let csv = dir.file("esp.csv")
        let export = try await runCLI(["capture", "export", espCapture, "--output", csv])
        #expect(export.status == 0, "\(export.err)")
        let rows = try String(contentsOfFile: csv, encoding: .utf8).split(separator: "\n")
        #expect(rows.count == 381)
        #expect(rows.first?.hasPrefix("line,y_um,x_um,t_us,flags,low0,high0") == true)
        #expect(rows.dropFirst().first?.split(separator: ",").count == 5 + 2 * 144)

        // The analysis accounts for every line: all of them here, the calibration judged by the rule.
        #expect(out["lines"]?.intValue == 380 && out["missing_lines"]?.intValue == 0 && out["complete"] == .bool(true), "\(r.out)")
        #expect(out["calibration"]?["accepted"] == .bool(true) && out["calibration_residual_g_cm2"]?.numberValue != nil)
        #expect(rois.allSatisfy { $0["complete"] == .bool(true) && $0["low_count_pixels"]?.intValue != nil })
        #expect(table.out.contains("lines: all 380 lines") && table.out.contains("accepted"), "\(table.out)")

        // Two data frames damaged on disk: the analysis names the lines they held and the ROIs
        // that lost them, in JSON and in the table.
        let contents = try CaptureFormat.parse([UInt8](Data(contentsOf: URL(fileURLWithPath: espCapture))))
        var records = contents.records
        // The records where a frame with lines inside L2 (lines 160–220) or L3 (280–340)
        // completes: how the link cut the stream into records varies from run to run, so they
        // are found by decoding the stream record by record. The last byte of such a record
        // belongs to that frame or to the next one, inside the same ROI either way.
        let data = records.indices.filter { records[$0].endpoint == .dataIn }
        var decoder = FrameDecoder()
        var targets: [Int] = []
        var wanted: [ClosedRange<UInt32>] = [170...205, 290...330]
        for k in data {
            decoder.append(records[k].bytes)
            while let f = decoder.next() {
                guard f.kind == .data, let d = try? DataFrame(payload: f.payload), let last = d.lines.last?.index,
                      let w = wanted.firstIndex(where: { $0.contains(last) }) else { continue }
                targets.append(k)
                wanted.remove(at: w)
            }
        }
        #expect(targets.count == 2, "no data record completes a frame inside L2 and L3")
        for k in targets { records[k].bytes[records[k].bytes.count - 1] ^= 0xFF }
        let damaged = dir.file("damaged.dxcap")
        try Data(try CaptureFormat.preamble(contents.header) + records.flatMap(\.encoded)).write(to: URL(fileURLWithPath: damaged))
        let d = try await runCLI(["analyze", "--calibration", calCapture, damaged, "--json"])
        #expect(d.status == 0, "\(d.err)")
        let dj = try JSONDecoder().decode(JSONValue.self, from: Data(d.out.utf8))
        let missing = dj["missing_lines"]?.intValue ?? 0
        print("damaged capture: \(missing) lines missing, ranges \(dj["missing_line_ranges"] ?? .null)")
        #expect(missing > 0 && dj["complete"] == .bool(false), "\(d.out)")
        if case .array(let ranges)? = dj["missing_line_ranges"] { #expect(ranges.count == 2) } else { Issue.record("no ranges: \(d.out)") }
        if case .array(let damagedROIs)? = dj["rois"] {
            let flagged = damagedROIs.filter { $0["complete"] == .bool(false) }
            #expect(!flagged.isEmpty && flagged.allSatisfy { ($0["missing_lines"]?.intValue ?? 0) > 0 }, "\(damagedROIs)")
        }
        let dt = try await runCLI(["analyze", "--calibration", calCapture, damaged])
        #expect(dt.status == 0 && dt.out.contains("INCOMPLETE") && dt.out.contains("lines missing (lines") && dt.out.contains("of its lines missing"), "\(dt.out)")

        // The same scan as another unit's capture: this unit's calibration does not measure it.
        var otherHeader = contents.header
        otherHeader.device.serial = "DX1-000999"
        let otherUnit = dir.file("other-unit.dxcap")
        try Data(try CaptureFormat.preamble(otherHeader) + contents.records.flatMap(\.encoded)).write(to: URL(fileURLWithPath: otherUnit))
        let elsewhere = try await runCLI(["analyze", "--calibration", calCapture, otherUnit, "--json"])
        #expect(elsewhere.status == 2 && elsewhere.out.isEmpty && elsewhere.err.split(separator: "\n").count == 1, "\(elsewhere)")
        #expect(elsewhere.err.contains("was made on DX-1 DX1-000123, this is DX-1 DX1-000999") && elsewhere.err.contains("--force"), "\(elsewhere.err)")
        let forcedElsewhere = try await runCLI(["analyze", "--calibration", calCapture, otherUnit, "--force", "--json"])
        let fe = try JSONDecoder().decode(JSONValue.self, from: Data(forcedElsewhere.out.utf8))
        #expect(forcedElsewhere.status == 0 && forcedElsewhere.err.contains("FORCED") && fe["forced"] == .bool(true), "\(forcedElsewhere.err)")
        #expect(fe["calibration_other_unit"]?.stringValue?.contains("DX1-000999") == true, "\(forcedElsewhere.out.prefix(300))")
        #expect(out["calibration_other_unit"] == nil && out["forced"] == .bool(false))

        // A phantom file with mislabelled cells gives a calibration the rule refuses: the daemon
        // keeps the calibration it has, `dexa analyze` refuses it too, with the same words.
        var wrongPhantom = StandardPhantoms.calibration
        if var cells = wrongPhantom.cells {
            for k in cells.indices where cells[k].lean == 15 { cells[k].hydroxyapatite = [0: 0, 0.5: 1.5, 1.0: 2.0, 1.5: 0.5, 2.0: 1.0][cells[k].hydroxyapatite] ?? cells[k].hydroxyapatite }
            wrongPhantom.cells = cells
        }
        let wrongPath = dir.file("mislabelled-phantom.json")
        try JSONEncoder().encode(wrongPhantom).write(to: URL(fileURLWithPath: wrongPath))
        let calibrationFile = try #require(cal["calibration"]?.stringValue)
        let before = try Data(contentsOf: URL(fileURLWithPath: calibrationFile))
        var refusedCapture = ""
        do {
            _ = try await daemon.call("service.calibrate", .object(["phantom": .string(wrongPath)]))
            Issue.record("a mislabelled phantom's calibration was accepted")
        } catch let e as RPCError {
            print("daemon: \(e.message)")
            #expect(e.message.contains("calibration refused: the calibration fits its phantom to") && e.message.contains("unchanged"), "\(e.message)")
            refusedCapture = String(e.message.prefix(while: { $0 != ":" }))
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: calibrationFile)) == before, "the calibration in use is unchanged")
        let refused = try await runCLI(["analyze", "--calibration", refusedCapture, espCapture])
        print("dexa analyze: \(refused.err)")
        #expect(refused.status == 2 && refused.out.isEmpty && refused.err.split(separator: "\n").count == 1, "\(refused)")
        #expect(refused.err.contains("calibration refused: the calibration fits its phantom to") && refused.err.contains("--force"), "\(refused.err)")
        let forced = try await runCLI(["analyze", "--calibration", refusedCapture, espCapture, "--force", "--json"])
        #expect(forced.status == 0, "\(forced.err)")
        #expect(forced.err.contains("FORCED") && (try? JSONDecoder().decode(JSONValue.self, from: Data(forced.out.utf8)))?["forced"] == .bool(true))

        // Calibrated, a patient scan runs, with its references, and is decomposed live.
        let patient = try await daemon.call("scan.run", .object([
            "role": .string("patient"), "region": .string("ap_spine"), "y_start_um": .number(505_000), "lines": .number(100),
            "line_period_us": .number(40_000), "tube_current_ua": .number(3000),
        ]))
        #expect(patient["result"]?.stringValue == "completed")
        #expect(patient["analysis"]?["bone_pixels"]?.intValue ?? 0 > 0, "\(patient)")

        // The archive analysed again at once (`dexa reanalyze`): each capture against the
        // calibration its unit was using (the refused one, made later, is passed over), every
        // failure the file's own.
        let batch = dir.file("batch")
        try FileManager.default.createDirectory(atPath: batch, withIntermediateDirectories: true)
        let patientCapture = try #require(patient["capture"]?.stringValue)
        var copies: [String: String] = [:]
        for (name, path) in [("1-calibration.dxcap", calCapture), ("2-esp.dxcap", espCapture), ("3-damaged.dxcap", damaged),
                             ("4-other-unit.dxcap", otherUnit), ("5-refused-calibration.dxcap", refusedCapture), ("6-patient.dxcap", patientCapture)] {
            try FileManager.default.copyItem(atPath: path, toPath: batch + "/" + name)
            copies[name] = batch + "/" + name
        }
        try Data("not a capture".utf8).write(to: URL(fileURLWithPath: batch + "/7-garbage.dxcap"))
        // A scout's capture (a dark scan and the scout's lines, no air scan): nothing to measure.
        let patientContents = try CaptureFormat.parse([UInt8](Data(contentsOf: URL(fileURLWithPath: patientCapture))))
        var scoutHeader = patientContents.header
        scoutHeader.scans.removeAll { $0.role == .air }
        try Data(try CaptureFormat.preamble(scoutHeader) + patientContents.records.flatMap(\.encoded)).write(to: URL(fileURLWithPath: batch + "/8-scout.dxcap"))
        try Data("notes".utf8).write(to: URL(fileURLWithPath: batch + "/notes.txt"))
        func outcomes(_ r: (status: Int32, out: String, err: String)) throws -> (captures: [String: JSONValue], summary: JSONValue?) {
            var captures: [String: JSONValue] = [:], summary: JSONValue?
            for line in r.out.split(separator: "\n") {
                let v = try JSONDecoder().decode(JSONValue.self, from: Data(line.utf8))
                if v["type"]?.stringValue == "summary" { summary = v["data"] } else if let c = v["data"]?["capture"]?.stringValue {
                    captures[(c as NSString).lastPathComponent] = v["data"]
                }
            }
            return (captures, summary)
        }
        let two = try await runCLI(["reanalyze", "--json", "--jobs", "2", batch])
        #expect(two.status == 2, "some captures failed: \(two.err)")
        let (got, summary) = try outcomes(two)
        #expect(Set(got.keys) == ["2-esp.dxcap", "3-damaged.dxcap", "4-other-unit.dxcap", "6-patient.dxcap", "7-garbage.dxcap"], "\(got.keys)")
        #expect(summary?["captures"]?.intValue == 5 && summary?["analysed"]?.intValue == 3 && summary?["failed"]?.intValue == 2
                && summary?["calibrations"]?.intValue == 2 && summary?["jobs"]?.intValue == 2 && summary?["incomplete"]?.intValue == 1
                && summary?["unanalysed"]?.intValue == 1 && summary?["scouts"]?.intValue == 1, "\(summary ?? .null)")
        let esp = try #require(got["2-esp.dxcap"])
        #expect(esp["ok"] == .bool(true) && esp["calibration"]?.stringValue == copies["1-calibration.dxcap"], "\(esp)")
        // The same numbers as `dexa analyze` gave for this capture.
        #expect(esp["result"]?["rois"] == out["rois"], "\(esp)")
        #expect(got["3-damaged.dxcap"]?["result"]?["missing_lines"]?.intValue == missing && got["3-damaged.dxcap"]?["result"]?["complete"] == .bool(false))
        #expect(got["4-other-unit.dxcap"]?["ok"] == .bool(false)
                && got["4-other-unit.dxcap"]?["error"]?.stringValue?.contains("no calibration capture of its unit") == true, "\(got["4-other-unit.dxcap"] ?? .null)")
        #expect(got["7-garbage.dxcap"]?["error"]?.stringValue?.contains("not a DX-1 capture") == true)
        let patientResult = try #require(got["6-patient.dxcap"])
        #expect(patientResult["ok"] == .bool(true) && patientResult["calibration"]?.stringValue == copies["1-calibration.dxcap"]
                && patientResult["result"]?["region"]?.stringValue == "ap_spine", "\(patientResult)")
        // The newer, refused calibration is named as passed over, with why.
        if case .array(let over)? = patientResult["calibrations_passed_over"] {
            #expect(over.count == 1 && over.first?.stringValue?.contains("5-refused-calibration.dxcap: calibration refused") == true, "\(over)")
        } else {
            Issue.record("no calibration passed over: \(patientResult)")
        }
        #expect(esp["calibrations_passed_over"] == nil, "the ESP capture was made before the refused calibration")
        // --force does not move a capture onto the refused calibration while an accepted one is there.
        let forcedAll = try await runCLI(["reanalyze", "--json", "--force", copies["1-calibration.dxcap"] ?? "", copies["5-refused-calibration.dxcap"] ?? "",
                                          copies["6-patient.dxcap"] ?? ""])
        #expect(try outcomes(forcedAll).captures["6-patient.dxcap"]?["calibration"]?.stringValue == copies["1-calibration.dxcap"], "\(forcedAll.out)")
        // One job at a time: the same results.
        let one = try await runCLI(["reanalyze", "--json", "--jobs", "1", batch])
        let (gotOne, _) = try outcomes(one)
        for (name, v) in got { #expect(gotOne[name]?["result"] == v["result"] && gotOne[name]?["error"] == v["error"], "\(name)") }
        // One calibration named for all: the other unit's capture is refused for that, not
        // for want of a calibration; with --force it is analysed and marked.
        let named = try await runCLI(["reanalyze", "--json", "--calibration", calCapture, copies["4-other-unit.dxcap"] ?? "", copies["2-esp.dxcap"] ?? ""])
        let (gotNamed, _) = try outcomes(named)
        #expect(named.status == 2 && gotNamed["4-other-unit.dxcap"]?["error"]?.stringValue?.contains("this is DX-1 DX1-000999") == true, "\(named.out)")
        #expect(gotNamed["2-esp.dxcap"]?["result"]?["rois"] == out["rois"])
        let forcedBatch = try await runCLI(["reanalyze", "--json", "--force", "--calibration", calCapture, copies["4-other-unit.dxcap"] ?? ""])
        let forcedOutcomes = try outcomes(forcedBatch).captures
        #expect(forcedBatch.status == 0 && forcedOutcomes["4-other-unit.dxcap"]?["result"]?["forced"] == .bool(true), "\(forcedBatch)")
        // The table: a line a capture and the summary.
        let text = try await runCLI(["reanalyze", batch])
        let lines = text.out.split(separator: "\n")
        #expect(text.status == 2 && lines.count == 7 && lines.last?.contains("5 captures: 3 analysed (1 incomplete, 1 without an automatic analysis), 2 failed; 2 calibration captures and 1 scouts not analysed") == true, "\(text.out)")
        #expect(lines.contains { $0.contains("newer calibrations of its unit passed over: ") && $0.contains("5-refused-calibration.dxcap") }, "\(text.out)")
        #expect(lines.contains { $0.contains("2-esp.dxcap: L1 ") && $0.contains("[calibration 1-calibration.dxcap]") }, "\(text.out)")
        // Bad arguments: one line, status 2, nothing analysed.
        let empty = dir.file("empty-folder")
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        for arguments in [["reanalyze", "--jobs", "0", batch], ["reanalyze", "--calibration", dir.file("none.dxcap"), batch],
                          ["reanalyze", "--calibration", copies["5-refused-calibration.dxcap"] ?? "", batch], ["reanalyze", empty]] {
            let r = try await runCLI(arguments)
            #expect(r.status == 2 && r.out.isEmpty && r.err.split(separator: "\n").count == 1, "\(arguments): \(r)")
        }
        let nowhere = try await runCLI(["reanalyze", dir.file("nowhere")])
        #expect(nowhere.status == 2 && nowhere.out.contains("no such file or folder"), "\(nowhere)")
    }

    @Test func badInputIsOneLineAndExitStatus2() async throws {
        let dir = TemporaryDirectory()
        let garbage = dir.file("garbage.dxcap")
        try Data("this is not a capture".utf8).write(to: URL(fileURLWithPath: garbage))
        let truncated = dir.file("truncated.dxcap")
        try Data(CaptureFormat.magic + [1, 0, 200, 0, 0, 0] + Array("{\"dev".utf8)).write(to: URL(fileURLWithPath: truncated))
        // A capture with a header but no scans at all.
        let empty = dir.file("empty.dxcap")
        try Data(CaptureFormat.preamble(CaptureHeader(device: SimulatorConfiguration.standardInfo, scans: []))).write(to: URL(fileURLWithPath: empty))
        for (cal, scan, says) in [(garbage, garbage, "not a DX-1 capture"), (truncated, truncated, "truncated"),
                                  (empty, empty, "phantom has no cells"), (dir.file("missing.dxcap"), empty, "cannot read")] {
            for arguments in [["analyze", "--calibration", cal, scan, "--json"], ["analyze", "--calibration", cal, scan, "--image", dir.file("x.png")],
                              ["capture", "replay", scan, "--calibration", cal]] {
                let r = try await runCLI(arguments)
                #expect(r.status == 2, "\(arguments): status \(r.status)")
                #expect(r.out.isEmpty)
                #expect(r.err.split(separator: "\n").count == 1, "\(r.err)")
                #expect(r.err.contains(says), "\(arguments): \(r.err)")
            }
        }
        #expect(!FileManager.default.fileExists(atPath: dir.file("x.png")), "no image from bad input")
        for (path, says) in [(garbage, "not a DX-1 capture"), (truncated, "truncated"), (dir.file("missing.dxcap"), "cannot read")] {
            for arguments in [["capture", "show", path], ["capture", "export", path]] {
                let r = try await runCLI(arguments)
                #expect(r.status == 2 && r.err.split(separator: "\n").count == 1 && r.err.contains(says), "\(arguments): \(r.status) \(r.err)")
            }
        }
        let list = try await runCLI(["capture", "list", "--directory", dir.file("nowhere")])
        #expect(list.status == 2 && list.err.contains("cannot read"))
        // The empty capture (no scans) is shown as such, not refused.
        let shown = try await runCLI(["capture", "show", empty])
        #expect(shown.status == 0 && shown.out.contains("0 records"), "\(shown.out) \(shown.err)")
    }
}

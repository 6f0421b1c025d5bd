import ArgumentParser
import DXAcquisition
import DXControl
import Foundation

/// `dexa precision`: the precision study that gives follow-ups their least significant change
/// (ISCD: 15 patients scanned 3 times or 30 twice, repositioned between scans, on one device).
struct PrecisionCommands: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "precision",
        abstract: "Precision studies: RMS-SD and least significant change per site from repeated exams.",
        subcommands: [Study.self, List.self])

    struct Study: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Compute the precision of L1-L4, total hip and femoral neck from repeated exams of the same patients.",
            discussion: """
                Each patient's exams are repeats (reposition the patient between them). The latest \
                completed scan of each site in each exam is used; excluded ROIs are left out. With \
                --save the result becomes this device's precision: every later follow-up judges \
                its changes against this LSC (audited).
                """)
        @OptionGroup var options: ConnectionOptions
        @Argument(help: "The exams of the study (at least two).") var exams: [Int64]
        @Flag(help: "Store the result as the device's precision.") var save = false

        func run() async throws {
            let r = try await options.call(.precisionStudy, PrecisionStudyParams(examIDs: exams, save: save))
            if options.json { Output.json(r); return }
            print("precision study on \(r.device), exams \(exams.map(String.init).joined(separator: ", "))")
            PrecisionText.printTable(r.rois)
            for note in r.notes { print("  left out: \(note)") }
            print(r.saved ? "saved: follow-ups on \(r.device) now use these LSCs" : "not saved (--save stores it)")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The precision studies in force (the latest per device and site).")
        @OptionGroup var options: ConnectionOptions

        func run() async throws {
            let r = try await options.call(.precisionList, NoParams())
            if options.json { Output.json(r); return }
            if r.studies.isEmpty { print("no precision study stored: follow-ups give changes without judging their significance"); return }
            for device in Set(r.studies.map(\.device)).sorted() {
                print("\(device):")
                PrecisionText.printTable(r.studies.filter { $0.device == device }, withDate: true)
            }
        }
    }
}

enum PrecisionText {
    static func printTable(_ rois: [PrecisionRecord], withDate: Bool = false) {
        print("region     patients  df  RMS-SD g/cm²  RMS-CV %  LSC g/cm²  LSC %")
        for p in rois {
            var line = p.roi.padding(toLength: 10, withPad: " ", startingAt: 0)
            line += String(p.patients).leftPadded(9) + String(p.degreesOfFreedom).leftPadded(4)
            line += String(format: "%.4f", p.rmsSDGCm2).leftPadded(14) + String(format: "%.2f", p.rmsCVPercent).leftPadded(10)
            line += String(format: "%.4f", p.lscGCm2).leftPadded(11) + String(format: "%.1f", p.lscPercent).leftPadded(7)
            if !p.meetsISCD { line += "  below ISCD's 27 df" }
            if !p.acceptable { line += "  worse than ISCD's minimum: retrain" }
            if withDate, let at = p.createdAt { line += "  (\(at.prefix(10)), \(p.createdBy ?? "?"))" }
            print(line)
        }
    }
}

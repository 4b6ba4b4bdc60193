package com.tinybeauty.demo

import android.content.Context
import android.util.Log
import org.json.JSONObject
import java.io.FileNotFoundException
import java.util.Arrays
import kotlin.math.max
import kotlin.math.min

/**
 * The look gate (`makeup/gate.py` `LookGate.apply`, as `student/apply.py` `gated_crop` uses it): the model's
 * change on the crop is clipped, per pixel, to the range the look shows in the region the pixel is in
 * (feathered outward: each region's own range up to its edge, fading over the band outside the regions); where
 * the look changes nothing the crop keeps the photo's values.
 * The ranges are the card's `"look_gate"`, taken along its `"basis"` rows (lightness and two colour axes: a
 * liner's range stops a red stroke on the eye rim), the change mapped back with `"basis_inverse"`; the regions
 * are the crop's soft region masks ([RegionMasks], `makeup/gate.py` `soft_region_masks`: from the crop's own
 * face-mesh landmarks and the card's `"regions"`), computed once per frame by the caller and shared with a
 * region-input model. The web demo's `src/gate.js` does the same.
 *
 * Not thread-safe: use it on the camera analysis thread. Buffers are allocated once per crop size.
 */
class LookGate private constructor(
    private val low: Array<FloatArray?>,     // per REGIONS entry, change limits along the basis rows; null: closed
    private val high: Array<FloatArray?>,
    private val basis: Array<FloatArray>?,   // rows; null: the limits are per RGB channel (an older card)
    private val inverse: Array<FloatArray>?,
    /** The soft edge of the regions (the card's `look_gate.feather`): the [RegionMasks] [apply] takes are at it. */
    val feather: Double,
    val size: Int,
) {
    /** Which regions the look may change, for the on-screen note. */
    val openRegions: List<String> = REGIONS.filterIndexed { i, _ -> low[i] != null }

    private val n = size
    private val lo = FloatArray(3 * n * n)
    private val hi = FloatArray(3 * n * n)
    private val weight = FloatArray(n * n)
    private val inside = BooleanArray(n * n)
    private val s = FloatArray(3)   // one pixel's source, change, and change along the basis
    private val d = FloatArray(3)
    private val e = FloatArray(3)

    /**
     * Clip [processed]'s change from [crop] (both `size * size` ARGB) into [out]; [regions] are the crop's soft
     * region masks at this gate's [feather] ([RegionMasks.compute] of this frame's crop landmarks).
     */
    fun apply(crop: IntArray, processed: IntArray, regions: RegionMasks, out: IntArray) {
        require(regions.size == size && regions.feather == feather) {
            "region masks at ${regions.size} px, feather ${regions.feather}; the gate's: $size px, feather $feather"
        }
        limits(regions.masks, regions.hard)
        for (i in 0 until n * n) {
            val c = crop[i]
            val p = processed[i]
            for (ch in 0 until 3) {
                val shift = 16 - 8 * ch
                s[ch] = ((c shr shift) and 0xFF) / 255f
                d[ch] = ((p shr shift) and 0xFF) / 255f - s[ch]
            }
            if (basis != null) mix(basis, d, e) else d.copyInto(e)
            for (ch in 0 until 3) e[ch] = min(max(e[ch], lo[3 * i + ch]), hi[3 * i + ch])
            if (inverse != null) mix(inverse, e, d) else e.copyInto(d)
            var rgb = 0
            for (ch in 0 until 3) {
                val shift = 16 - 8 * ch
                val v = Math.rint(((s[ch] + d[ch]) * 255f).toDouble()).toInt().coerceIn(0, 255)
                rgb = rgb or (v shl shift)
            }
            out[i] = (c and ALPHA_MASK) or rgb
        }
    }

    /** `makeup/gate.py` `_mix`: y = m x, each output (m0 x0 + m1 x1) + m2 x2 in float. */
    private fun mix(m: Array<FloatArray>, x: FloatArray, y: FloatArray) {
        for (k in 0 until 3) y[k] = (m[k][0] * x[0] + m[k][1] * x[1]) + m[k][2] * x[2]
    }

    /**
     * `LookGate.limits`: weighted average of the region limits ([REGIONS] order), each region's weight 1 on its
     * own pixels ([hard]) and, where no region the gate bounds holds the pixel, its soft mask ([masks]).
     */
    private fun limits(masks: Array<FloatArray>, hard: Array<FloatArray>) {
        Arrays.fill(lo, 0f); Arrays.fill(hi, 0f); Arrays.fill(weight, 0f); Arrays.fill(inside, false)
        for (r in REGIONS.indices) {
            if (low[r] == null || high[r] == null) continue
            val own = hard[r]
            for (i in 0 until n * n) if (own[i] > 0f) inside[i] = true
        }
        for (r in REGIONS.indices) {
            val lower = low[r] ?: continue
            val upper = high[r] ?: continue
            val region = masks[r]
            val own = hard[r]
            for (i in 0 until n * n) {
                val w = if (own[i] > 0f) 1f else if (inside[i]) 0f else region[i]
                if (w == 0f) continue
                for (ch in 0 until 3) {
                    lo[3 * i + ch] += w * lower[ch]
                    hi[3 * i + ch] += w * upper[ch]
                }
                weight[i] += w
            }
        }
        for (i in 0 until n * n) {
            val over = max(weight[i], 1f)
            for (ch in 0 until 3) { lo[3 * i + ch] /= over; hi[3 * i + ch] /= over }
        }
    }

    /** A gate, or null with the one line the app shows about running ungated. */
    class Loaded(val gate: LookGate?, val note: String?)

    companion object {
        private const val TAG = "LookGate"
        private const val ALPHA_MASK = -0x1000000  // 0xFF000000

        /** makeup.gate.LookGate's default feather, for a look_gate entry written without one. */
        const val DEFAULT_FEATHER = 0.02

        /** The regions the gate's ranges are given for: [RegionMasks.REGIONS] (makeup.metrics.FIDELITY_REGIONS). */
        val REGIONS = RegionMasks.REGIONS

        /**
         * The card's `"look_gate"`; null when the card has no look_gate (an older export). Throws when the card
         * has no `"regions"` (the gate needs them: [RegionMasks.fromModelCard] reads them).
         */
        fun fromModelCard(json: String, size: Int): LookGate? {
            val card = JSONObject(json)
            if (card.isNull("look_gate")) return null
            val gate = card.getJSONObject("look_gate")
            val bounds = gate.getJSONObject("bounds")
            val low = arrayOfNulls<FloatArray>(REGIONS.size)
            val high = arrayOfNulls<FloatArray>(REGIONS.size)
            for ((i, name) in REGIONS.withIndex()) {
                if (!bounds.has(name) || bounds.isNull(name)) continue
                val b = bounds.getJSONObject(name)
                val lo = b.getJSONArray("low"); val hi = b.getJSONArray("high")
                low[i] = FloatArray(3) { lo.getDouble(it).toFloat() }
                high[i] = FloatArray(3) { hi.getDouble(it).toFloat() }
            }
            // The basis the limits are in; a card without one (written before it) clips per RGB channel.
            var basis: Array<FloatArray>? = null
            var inverse: Array<FloatArray>? = null
            if (gate.has("basis") && gate.has("basis_inverse")) {
                val rows = gate.getJSONArray("basis"); val inv = gate.getJSONArray("basis_inverse")
                basis = Array(3) { r -> FloatArray(3) { rows.getJSONArray(r).getDouble(it).toFloat() } }
                inverse = Array(3) { r -> FloatArray(3) { inv.getJSONArray(r).getDouble(it).toFloat() } }
            }
            card.getJSONObject("regions")  // where the regions are: RegionMasks reads them
            return LookGate(low, high, basis, inverse, gate.optDouble("feather", DEFAULT_FEATHER), size)
        }

        /** From assets/model_card.json; without a usable look gate, null and the line saying the app runs ungated. */
        fun load(context: Context, size: Int): Loaded = try {
            val text = context.assets.open(Alignment.MODEL_CARD_ASSET).bufferedReader().use { it.readText() }
            val gate = fromModelCard(text, size)
            if (gate == null) Loaded(null, "ungated: ${Alignment.MODEL_CARD_ASSET} has no look_gate (an older export)")
            else Loaded(gate, null)
        } catch (e: FileNotFoundException) {
            Loaded(null, "ungated: ${Alignment.MODEL_CARD_ASSET} is not in assets (the look gate is in the card)")
        } catch (e: Exception) {
            Log.w(TAG, "model card without a usable look gate", e)
            Loaded(null, "ungated: ${Alignment.MODEL_CARD_ASSET} has no usable \"look_gate\"/\"regions\"")
        }
    }
}
